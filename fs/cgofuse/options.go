package cgofuse

import (
	"errors"
	"log/slog"
)

// ErrUnavailable: this binary was built without the adapter.
var ErrUnavailable = errors.New("this dvfs was built without the cgofuse adapter: on Linux it needs cgo, the libfuse3 headers (Debian: libfuse3-dev) and go build -tags fuse3")

// Options configure a mount.
type Options struct {
	// AllowOther lets users other than the one who mounted in; the kernel
	// then checks permissions (default_permissions).
	AllowOther bool
	// Debug logs every FUSE request (libfuse's -d, on stderr).
	Debug bool
	// Logger receives the adapter's log; nil discards it.
	Logger *slog.Logger
	// ReadAhead is how many bytes the kernel reads ahead of a sequential
	// reader: 0 means fs.DefaultReadAhead, a negative value leaves the
	// kernel's default. Setting it needs root (Linux only).
	ReadAhead int
}
