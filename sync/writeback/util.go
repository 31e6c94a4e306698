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

// errGone: the server no longer has the clone (it was removed, here or
// from another workstation). Not an outage: nothing to retry.
var errGone = errors.New("the clone no longer exists on the server")

// isGone says whether the server answered 404 for the clone.
func isGone(err error) bool {
	var se interface{ StatusCode() int }
	return errors.As(err, &se) && se.StatusCode() == http.StatusNotFound
}

// isRefused reports whether the server refused a commit for good: our
// lease epoch is stale (412) or the parent generation moved (409).
//
// A 409 that lists blocks the server lacks is not a refusal: the server
// lost blocks it had answered an upload of, and the next cycle's upload
// sends them again (it asks the server what it lacks) before committing
// again. Taking it for a takeover made a conflict clone, whose commit
// lacked the same blocks, and the clone never synced.
func isRefused(err error) bool {
	var lb interface{ LacksBlocks() bool }
	if errors.As(err, &lb) && lb.LacksBlocks() {
		return false
	}
	var se interface{ StatusCode() int }
	if errors.As(err, &se) {
		s := se.StatusCode()
		return s == http.StatusPreconditionFailed || s == http.StatusConflict
	}
	return false
}
