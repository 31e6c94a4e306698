//go:build !linux && !windows

package diskio

import (
	"fmt"
	"os"
)

// OpenDirect fails: no O_DIRECT here.
func OpenDirect(path string, _ int) (*os.File, error) {
	return nil, fmt.Errorf("open %s: %w", path, ErrNoDirectIO)
}

// Fdatasync makes f's data durable (fsync).
func Fdatasync(f *os.File) error { return f.Sync() }

// AdviseSequential gives no advice here.
func AdviseSequential(*os.File) {}

// Punch makes [off, off+n) of f read as zeros by writing them.
func Punch(f *os.File, off, n int64) error { return writeZeros(f, off, n) }

// SeekData says data everywhere below f's length (see the Windows twin).
func SeekData(f *os.File, off int64, hole bool) (int64, bool, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	return dataEverywhere(off, hole, st.Size())
}

// Allocated returns f's length: what it takes without holes.
func Allocated(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
