package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/repo"
)

// statusOf maps an error to its HTTP status: one table for every handler.
func statusOf(err error) int {
	var (
		maxBytes *http.MaxBytesError
		refused  *api.DeltaRefusedError
	)
	switch {
	case errors.As(err, &maxBytes):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &refused):
		// The client's deltas: 422 when some do not rebuild to their
		// IDs, 409 when all that failed only lack their base.
		if len(refused.Mismatch) > 0 {
			return http.StatusUnprocessableEntity
		}
		return http.StatusConflict
	case errors.Is(err, repo.ErrNotFound), errors.Is(err, blockstore.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, repo.ErrMissingBlocks), errors.Is(err, blockstore.ErrConflict), errors.Is(err, repo.ErrExists),
		errors.Is(err, repo.ErrLeased):
		return http.StatusConflict
	case errors.Is(err, repo.ErrFenced):
		// 412: the request's precondition (its lease epoch) no longer
		// holds; the client must not retry it as it is.
		return http.StatusPreconditionFailed
	case errors.Is(err, repo.ErrQuota):
		return http.StatusInsufficientStorage
	case errors.Is(err, errNoMulticast):
		return http.StatusNotImplemented
	case errors.Is(err, repo.ErrInvalid), errors.Is(err, api.ErrMalformed),
		errors.Is(err, manifest.ErrMalformed), errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errUnprocessable), errors.Is(err, blockstore.ErrCorrupt):
		// A corrupt upload is the client's fault; corrupt stored data is
		// found before any byte is sent and is ours, but both must be
		// refused loudly. Uploads are checked first (repo.CheckUpload).
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

var (
	errBadRequest = errors.New("bad request")
	// errUnprocessable: a well-formed request that cannot be taken as
	// it is (422).
	errUnprocessable = errors.New("unprocessable request")
)

func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	body := api.Error{Error: err.Error()}
	var missing *repo.MissingError
	if errors.As(err, &missing) {
		for i, id := range missing.IDs {
			if i == 1000 {
				break
			}
			body.Missing = append(body.Missing, id.String())
		}
	}
	var refused *api.DeltaRefusedError
	if errors.As(err, &refused) {
		// At most api.MaxDeltasPerUpload: all of them, so the client
		// knows every block to send whole.
		for _, id := range refused.BaseMissing {
			body.DeltaBaseMissing = append(body.DeltaBaseMissing, id.String())
		}
		for _, id := range refused.Mismatch {
			body.DeltaMismatch = append(body.DeltaMismatch, id.String())
		}
	}
	var leased *repo.LeaseError
	if errors.As(err, &leased) {
		body.Lease = &leased.Lease
	}
	level := slogLevel(status)
	s.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
