package fs

import iofs "io/fs"

// The st_mode bits FUSE carries, with POSIX's values on every platform
// (WinFsp's FUSE layer uses them too, whatever the host calls them).
const (
	unixIFMT   = 0o170000
	unixIFSOCK = 0o140000
	unixIFLNK  = 0o120000
	unixIFREG  = 0o100000
	unixIFBLK  = 0o060000
	unixIFDIR  = 0o040000
	unixIFCHR  = 0o020000
	unixIFIFO  = 0o010000
	unixISUID  = 0o4000
	unixISGID  = 0o2000
	unixISVTX  = 0o1000
)

// IOBlockSize is the st_blksize adapters report: the block size, so that
// programs sizing their I/O by it write whole blocks, which a clone
// stores without reading.
const IOBlockSize = 64 << 10

// UnixMode turns an io/fs mode into st_mode.
func UnixMode(m iofs.FileMode) uint32 {
	mode := uint32(m.Perm())
	switch m.Type() {
	case iofs.ModeDir:
		mode |= unixIFDIR
	case iofs.ModeSymlink:
		mode |= unixIFLNK
	case iofs.ModeNamedPipe:
		mode |= unixIFIFO
	case iofs.ModeSocket:
		mode |= unixIFSOCK
	case iofs.ModeDevice:
		mode |= unixIFBLK
	case iofs.ModeDevice | iofs.ModeCharDevice:
		mode |= unixIFCHR
	default:
		mode |= unixIFREG
	}
	if m&iofs.ModeSetuid != 0 {
		mode |= unixISUID
	}
	if m&iofs.ModeSetgid != 0 {
		mode |= unixISGID
	}
	if m&iofs.ModeSticky != 0 {
		mode |= unixISVTX
	}
	return mode
}

// UnixType returns st_mode's type bits of an io/fs mode.
func UnixType(m iofs.FileMode) uint32 { return UnixMode(m) & unixIFMT }

// TypeFromUnix turns st_mode's type bits into an io/fs mode's (0 for a
// regular file).
func TypeFromUnix(mode uint32) iofs.FileMode {
	switch mode & unixIFMT {
	case unixIFDIR:
		return iofs.ModeDir
	case unixIFLNK:
		return iofs.ModeSymlink
	case unixIFIFO:
		return iofs.ModeNamedPipe
	case unixIFSOCK:
		return iofs.ModeSocket
	case unixIFBLK:
		return iofs.ModeDevice
	case unixIFCHR:
		return iofs.ModeDevice | iofs.ModeCharDevice
	}
	return 0
}

// PermFromUnix turns st_mode's permission, set-ID and sticky bits into
// an io/fs mode.
func PermFromUnix(mode uint32) iofs.FileMode {
	m := iofs.FileMode(mode & 0o777)
	if mode&unixISUID != 0 {
		m |= iofs.ModeSetuid
	}
	if mode&unixISGID != 0 {
		m |= iofs.ModeSetgid
	}
	if mode&unixISVTX != 0 {
		m |= iofs.ModeSticky
	}
	return m
}
