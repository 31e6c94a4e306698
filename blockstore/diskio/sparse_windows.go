package diskio

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// OpenDirect fails on Windows: the stores write through the cache there.
// (FILE_FLAG_NO_BUFFERING would be the twin of O_DIRECT; not done yet.)
func OpenDirect(path string, _ int) (*os.File, error) {
	return nil, fmt.Errorf("open %s: %w", path, ErrNoDirectIO)
}

// Fdatasync makes f's data durable (FlushFileBuffers).
func Fdatasync(f *os.File) error { return f.Sync() }

// AdviseSequential gives no advice on Windows, which takes it only when
// a file is opened (FILE_FLAG_SEQUENTIAL_SCAN).
func AdviseSequential(*os.File) {}

// fileZeroDataInformation is FILE_ZERO_DATA_INFORMATION.
type fileZeroDataInformation struct {
	FileOffset, BeyondFinalZero int64
}

// Punch makes [off, off+n) of f read as zeros without changing its length:
// it marks f sparse (FSCTL_SET_SPARSE, once is enough but again is
// harmless) and zeroes the range (FSCTL_SET_ZERO_DATA), which frees the
// whole allocation units inside it. Where the file system has no sparse
// files (FAT, some network shares), it writes zeros.
func Punch(f *os.File, off, n int64) error {
	if n <= 0 {
		return nil
	}
	err := control(f, "punch", func(h windows.Handle) error {
		var done uint32
		if err := windows.DeviceIoControl(h, windows.FSCTL_SET_SPARSE, nil, 0, nil, 0, &done, nil); err != nil {
			return err
		}
		z := fileZeroDataInformation{FileOffset: off, BeyondFinalZero: off + n}
		return windows.DeviceIoControl(h, windows.FSCTL_SET_ZERO_DATA,
			(*byte)(unsafe.Pointer(&z)), uint32(unsafe.Sizeof(z)), nil, 0, &done, nil)
	})
	if unsupported(err) {
		return writeZeros(f, off, n)
	}
	return err
}

// fileAllocatedRangeBuffer is FILE_ALLOCATED_RANGE_BUFFER.
type fileAllocatedRangeBuffer struct {
	FileOffset, Length int64
}

// SeekData returns the first offset at or past off where data (hole
// false) or a hole (hole true) begins in f, as lseek's SEEK_DATA and
// SEEK_HOLE find it, from the ranges the file system says are allocated
// (FSCTL_QUERY_ALLOCATED_RANGES); ok is false when no data follows off
// (past the end, for either). Where the file system cannot tell, data
// everywhere below the length.
func SeekData(f *os.File, off int64, hole bool) (int64, bool, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	size := st.Size()
	if off >= size {
		return 0, false, nil
	}
	at, found := off, false // for a hole: the end of the data from off on
	var ranges [64]fileAllocatedRangeBuffer
	q := fileAllocatedRangeBuffer{FileOffset: off, Length: size - off}
	for q.Length > 0 && !found {
		var got uint32
		err := control(f, "query allocated ranges", func(h windows.Handle) error {
			return windows.DeviceIoControl(h, windows.FSCTL_QUERY_ALLOCATED_RANGES,
				(*byte)(unsafe.Pointer(&q)), uint32(unsafe.Sizeof(q)),
				(*byte)(unsafe.Pointer(&ranges[0])), uint32(unsafe.Sizeof(ranges)), &got, nil)
		})
		more := errors.Is(err, windows.ERROR_MORE_DATA)
		if unsupported(err) {
			return dataEverywhere(off, hole, size)
		}
		if err != nil && !more {
			return 0, false, err
		}
		rs := ranges[:got/uint32(unsafe.Sizeof(ranges[0]))]
		if more && len(rs) == 0 {
			return 0, false, &iofs.PathError{Op: "query allocated ranges", Path: f.Name(), Err: err}
		}
		for _, r := range rs {
			if !hole {
				return max(r.FileOffset, off), true, nil
			}
			if r.FileOffset > at {
				found = true
				break
			}
			at = max(at, r.FileOffset+r.Length)
		}
		if !more {
			break
		}
		last := rs[len(rs)-1]
		q.FileOffset = last.FileOffset + last.Length
		q.Length = size - q.FileOffset
	}
	if !hole {
		return 0, false, nil
	}
	return min(at, size), true, nil
}

// fileStandardInfo is FILE_STANDARD_INFO.
type fileStandardInfo struct {
	AllocationSize, EndOfFile int64
	NumberOfLinks             uint32
	DeletePending, Directory  bool
}

// Allocated returns the bytes f takes on its disk (its allocation size).
func Allocated(f *os.File) (int64, error) {
	var info fileStandardInfo
	err := control(f, "file standard info", func(h windows.Handle) error {
		return windows.GetFileInformationByHandleEx(h, windows.FileStandardInfo,
			(*byte)(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info)))
	})
	return info.AllocationSize, err
}

// unsupported reports whether err says the file system has no such
// control (FAT, a network share, or an emulation without it).
func unsupported(err error) bool {
	return errors.Is(err, windows.ERROR_INVALID_FUNCTION) || errors.Is(err, windows.ERROR_NOT_SUPPORTED)
}

// control runs fn on f's handle.
func control(f *os.File, op string, fn func(h windows.Handle) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) { opErr = fn(windows.Handle(fd)) }); err != nil {
		return err
	}
	if opErr != nil {
		return &iofs.PathError{Op: op, Path: f.Name(), Err: opErr}
	}
	return nil
}
