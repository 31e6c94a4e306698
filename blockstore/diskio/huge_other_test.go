//go:build !linux

package diskio

import "testing"

// checkHugeAdvice has nothing to check where HugeBuffer gives no advice.
func checkHugeAdvice(*testing.T, int, uintptr) {}
