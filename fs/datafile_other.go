//go:build !linux

package fs

func (f osDataFile) Sync() error { return f.File.Sync() }

func (f osDataFile) Punch(off, n int64) error { return zeroFill(f, off, n) }
