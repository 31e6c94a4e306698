// Package diskio holds the few file-system calls that dvfs's stores, its
// overlay and its publisher all need in the same careful form: a directory
// sync, a file written whole and durably, and vectored reads and writes
// that finish what a short call left.
package diskio

import (
	"errors"
	"os"
	"path/filepath"
	"unsafe"
)

// SyncDir makes the entries of a directory durable: a file created or
// renamed in it survives a crash only after this.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(syncDir(d), d.Close())
}

// DirectAlign is the alignment O_DIRECT asks of buffers, offsets and
// lengths on the file systems that matter (4 KiB sectors or pages).
const DirectAlign = 4096

// AlignedBuffer returns n bytes that start on a DirectAlign boundary, as
// O_DIRECT reads and writes need.
func AlignedBuffer(n int) []byte { return AlignedBufferAt(n, 0) }

// AlignedBufferAt returns n bytes of which byte lead falls on a DirectAlign
// boundary: a buffer for a block frame whose payload, after a header of
// lead bytes, an O_DIRECT write can take without a copy.
func AlignedBufferAt(n, lead int) []byte {
	b := make([]byte, n+DirectAlign)
	at := uintptr(unsafe.Pointer(&b[0])) + uintptr(lead)
	skip := int((DirectAlign - at%DirectAlign) % DirectAlign)
	return b[skip : skip+n : skip+n]
}

// Aligned reports whether O_DIRECT can write b as it is: it starts on a
// DirectAlign boundary and is a whole number of DirectAlign units long.
func Aligned(b []byte) bool {
	return len(b) > 0 && len(b)%DirectAlign == 0 && uintptr(unsafe.Pointer(&b[0]))%DirectAlign == 0
}

// advance drops the first n bytes of iov.
func advance(iov [][]byte, n int) [][]byte {
	for n > 0 && len(iov) > 0 {
		if n >= len(iov[0]) {
			n -= len(iov[0])
			iov = iov[1:]
		} else {
			iov[0] = iov[0][n:]
			n = 0
		}
	}
	return iov
}

// WriteFileSync writes a file whole and durably: a temporary file, fsync,
// rename, fsync of the directory. The file has mode perm before data is
// in it.
func WriteFileSync(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}
