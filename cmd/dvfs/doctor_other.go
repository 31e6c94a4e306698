//go:build !linux

package main

// checkFUSE: the FUSE layer of this system (WinFsp, macFUSE) is not
// checked yet; the mount says what it lacks.
func checkFUSE() finding {
	return finding{Check: "fuse", Verdict: verdictSkip, Detail: "not checked on this system: dvfs mount says what it lacks"}
}
