package diskio

import (
	"errors"
	"os"
)

// The calls below are what the stores and the overlay ask of a file beyond
// reads and writes. Each system answers them in its own file: Linux with
// fallocate, lseek and fadvise; Windows with the sparse-file controls
// (FSCTL_SET_SPARSE, FSCTL_SET_ZERO_DATA, FSCTL_QUERY_ALLOCATED_RANGES);
// elsewhere with plain writes. The semantics are the same everywhere: a
// punched range reads as zeros and the length stays; what a system cannot
// do is a cost (space not freed, a hole reported as data), never a change
// in what is read.

// ErrNoDirectIO is OpenDirect's error where unbuffered writes are not
// offered: the caller writes through the cache instead.
var ErrNoDirectIO = errors.New("no direct I/O here")

// writeZeros writes zeros over [off, off+n) of f, up to its length: a
// punch where the file system cannot make a hole.
func writeZeros(f *os.File, off, n int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	n = min(off+n, st.Size()) - off
	if n <= 0 {
		return nil
	}
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.WriteAt(buf[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

// dataEverywhere is SeekData's answer where the file system cannot tell
// holes from data: data everywhere below the length, the one hole at it.
func dataEverywhere(off int64, hole bool, size int64) (int64, bool, error) {
	switch {
	case off >= size:
		return 0, false, nil
	case hole:
		return size, true, nil
	}
	return off, true, nil
}
