//go:build !windows

package disktest

// Wine reports whether this process runs under Wine: never, outside
// Windows builds.
func Wine() bool { return false }
