package fs

import (
	"os"

	"github.com/dvfs-project/dvfs/blockstore/diskio"
)

// dataFile is an overlay's local data file: a regular file's local blocks
// at their natural offsets. It is an interface so that tests can inject
// the failures of a full or failing disk.
type dataFile interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Truncate sets the length.
	Truncate(size int64) error
	// Sync makes the written data durable (fdatasync).
	Sync() error
	// Punch makes [off, off+n) read as zeros without changing the length,
	// freeing the space where the disk can.
	Punch(off, n int64) error
	// SeekData returns the first offset at or past off where data (hole
	// false) or a hole (hole true) begins in the file, as lseek's
	// SEEK_DATA and SEEK_HOLE find it; ok is false when no data follows
	// off (past the end, for either). A disk that cannot tell says data
	// everywhere below the length.
	SeekData(off int64, hole bool) (at int64, ok bool, err error)
	Close() error
}

// osDataFile is a dataFile on the local disk: sparse where the file
// system has sparse files (Linux: fallocate and lseek; Windows: the
// sparse-file controls), zeros written where it has not.
type osDataFile struct{ *os.File }

func (f osDataFile) Sync() error { return diskio.Fdatasync(f.File) }

func (f osDataFile) Punch(off, n int64) error { return diskio.Punch(f.File, off, n) }

func (f osDataFile) SeekData(off int64, hole bool) (int64, bool, error) {
	return diskio.SeekData(f.File, off, hole)
}

func openOSDataFile(path string) (dataFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return osDataFile{f}, nil
}
