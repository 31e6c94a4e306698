//go:build unix && !linux

package multicast

// No option sets a socket buffer past the system's limits here.
const rcvBufForce, sndBufForce = 0, 0
