//go:build race

package multicast

// raceEnabled: the race detector slows receivers several times; tests
// send slower so loss stays what they inject.
const raceEnabled = true
