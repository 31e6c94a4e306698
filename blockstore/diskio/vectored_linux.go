package diskio

import (
	"os"

	"golang.org/x/sys/unix"
)

// PreadvFull reads into iov at off until every buffer is full or the file
// ends, and returns how many bytes it read. iov's slices are consumed.
func PreadvFull(f *os.File, iov [][]byte, off int64) (int, error) {
	total := 0
	for len(iov) > 0 {
		n, err := unix.Preadv(int(f.Fd()), iov[:min(len(iov), iovMax)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil
		}
		total += n
		off += int64(n)
		iov = advance(iov, n)
	}
	return total, nil
}

// PwritevFull writes all of iov at off. iov's slices are consumed.
func PwritevFull(f *os.File, iov [][]byte, off int64) error {
	for len(iov) > 0 {
		n, err := unix.Pwritev(int(f.Fd()), iov[:min(len(iov), iovMax)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		off += int64(n)
		iov = advance(iov, n)
	}
	return nil
}

// iovMax is Linux's IOV_MAX: a call with more buffers fails (EINVAL).
const iovMax = 1024
