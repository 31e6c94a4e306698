//go:build !linux

package diskio

import (
	"errors"
	"io"
	"os"
)

// PreadvFull reads into iov at off until every buffer is full or the file
// ends, and returns how many bytes it read. iov's slices are consumed.
// Without preadv it reads one buffer at a time (ReadAt, which itself
// finishes what a short read left).
func PreadvFull(f *os.File, iov [][]byte, off int64) (int, error) {
	total := 0
	for len(iov) > 0 {
		if len(iov[0]) == 0 {
			iov = iov[1:]
			continue
		}
		n, err := f.ReadAt(iov[0], off)
		total += n
		off += int64(n)
		iov = advance(iov, n)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// PwritevFull writes all of iov at off. iov's slices are consumed.
// Without pwritev it writes one buffer at a time.
func PwritevFull(f *os.File, iov [][]byte, off int64) error {
	for len(iov) > 0 {
		if len(iov[0]) == 0 {
			iov = iov[1:]
			continue
		}
		n, err := f.WriteAt(iov[0], off)
		if err != nil {
			return err
		}
		off += int64(n)
		iov = advance(iov, n)
	}
	return nil
}
