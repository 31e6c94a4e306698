//go:build linux

package gofuse

import "github.com/dvfs-project/dvfs/fs"

// DefaultReadAhead is the readahead a mount sets by default:
// fs.DefaultReadAhead, where the measurement behind it is.
const DefaultReadAhead = fs.DefaultReadAhead
