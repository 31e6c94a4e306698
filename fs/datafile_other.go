//go:build !linux

package fs

func (f osDataFile) Sync() error { return f.File.Sync() }

func (f osDataFile) Punch(off, n int64) error { return zeroFill(f, off, n) }

func (f osDataFile) SeekData(off int64, hole bool) (int64, bool, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	switch {
	case off >= st.Size():
		return 0, false, nil
	case hole:
		return st.Size(), true, nil
	}
	return off, true, nil
}
