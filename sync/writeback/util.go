package writeback

import (
	"errors"
	"net/http"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

func appendBlock(dst []byte, id blockstore.ID, frame []byte) []byte {
	return api.AppendBlock(dst, id, frame)
}

// isRefused reports whether the server refused a commit for good: our
// lease epoch is stale (412) or the parent generation moved (409).
func isRefused(err error) bool {
	var se interface{ StatusCode() int }
	if errors.As(err, &se) {
		s := se.StatusCode()
		return s == http.StatusPreconditionFailed || s == http.StatusConflict
	}
	return false
}
