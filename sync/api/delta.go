package api

import (
	"errors"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
)

// An upload batch's record may carry a delta frame (blockstore.
// AppendDeltaFrame): the block as the sectors in which it differs from a
// base block the server already holds durably (a block of a committed
// template version or clone generation, or one uploaded earlier). The
// server rebuilds the block, checks that it hashes to the record's ID,
// and only then takes it. When it cannot, it answers
//
//	409  some deltas' base blocks are not on the server
//	422  some deltas do not rebuild to their IDs (and perhaps bases lack)
//
// with an Error naming those blocks in DeltaBaseMissing and DeltaMismatch.
// Every other record of that batch was taken as with 204; the named blocks
// were not, and the client sends them again whole.

// MaxDeltasPerUpload bounds the delta records of one upload batch (a batch
// of 4 KiB deltas is 32 MiB), so that the work one request makes the
// server do, and the IDs a refusal names, stay bounded. A batch with more
// gets 400.
const MaxDeltasPerUpload = 8192

// ErrDeltaRefused is wrapped by the error of an upload whose deltas the
// server refused (DeltaRefusedError): the client sends those blocks whole.
var ErrDeltaRefused = errors.New("delta blocks refused: send them whole")

// DeltaRefusedError names the delta blocks of an upload that were not
// taken. It wraps ErrDeltaRefused.
type DeltaRefusedError struct {
	// BaseMissing lists blocks whose base the server lacks.
	BaseMissing []blockstore.ID
	// Mismatch lists blocks whose delta, applied to the base, does not
	// hash to the block's ID (or does not fit the base).
	Mismatch []blockstore.ID
}

func (e *DeltaRefusedError) Error() string {
	return fmt.Sprintf("%v: %d lack their base, %d do not rebuild to their ID", ErrDeltaRefused, len(e.BaseMissing), len(e.Mismatch))
}

func (e *DeltaRefusedError) Unwrap() error { return ErrDeltaRefused }

// IDs returns every refused block: those to send again whole.
func (e *DeltaRefusedError) IDs() []blockstore.ID {
	return append(append([]blockstore.ID(nil), e.BaseMissing...), e.Mismatch...)
}
