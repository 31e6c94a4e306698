//go:build !linux

package multicast

import (
	"errors"
	"fmt"
)

// raiseThreadPriority leaves the thread's priority: the sender runs on the
// server, which is Linux.
func raiseThreadPriority() error {
	return fmt.Errorf("thread priority: %w", errors.ErrUnsupported)
}
