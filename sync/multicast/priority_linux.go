package multicast

import "golang.org/x/sys/unix"

// raiseThreadPriority gives the calling thread senderNice.
func raiseThreadPriority() error {
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), senderNice)
}
