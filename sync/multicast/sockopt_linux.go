package multicast

import "golang.org/x/sys/unix"

// The options that set a socket buffer past rmem_max/wmem_max.
const rcvBufForce, sndBufForce = unix.SO_RCVBUFFORCE, unix.SO_SNDBUFFORCE
