package api

import (
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
)

// AppendIDs appends the wire form of an ID list: the IDs back to back.
func AppendIDs(dst []byte, ids []blockstore.ID) []byte {
	for i := range ids {
		dst = append(dst, ids[i][:]...)
	}
	return dst
}

// DecodeIDs decodes an ID list of at most max IDs.
func DecodeIDs(b []byte, max int) ([]blockstore.ID, error) {
	if len(b)%blockstore.IDSize != 0 {
		return nil, fmt.Errorf("%w: ID list of %d bytes is not a multiple of %d", ErrMalformed, len(b), blockstore.IDSize)
	}
	n := len(b) / blockstore.IDSize
	if n > max {
		return nil, fmt.Errorf("%w: %d IDs in one request, at most %d", ErrMalformed, n, max)
	}
	ids := make([]blockstore.ID, n)
	for i := range ids {
		copy(ids[i][:], b[i*blockstore.IDSize:])
	}
	return ids, nil
}
