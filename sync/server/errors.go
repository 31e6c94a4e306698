package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"

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
		body     *bodyError
	)
	switch {
	case errors.As(err, &maxBytes), errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &body):
		// The client sent too little, too slowly or not at all; or the
		// server had no memory for the body in time.
		switch {
		case errors.Is(err, errTooMany):
			return http.StatusTooManyRequests
		case errors.Is(err, errBusy):
			return http.StatusServiceUnavailable
		case errors.Is(err, os.ErrDeadlineExceeded):
			return http.StatusRequestTimeout
		}
		return http.StatusBadRequest
	case errors.As(err, &refused):
		// The client's deltas: 422 when some do not rebuild to their
		// IDs, 409 when all that failed only lack their base.
		if len(refused.Mismatch) > 0 {
			return http.StatusUnprocessableEntity
		}
		return http.StatusConflict
	case errors.Is(err, repo.ErrCollecting):
		return http.StatusServiceUnavailable
	case errors.Is(err, repo.ErrNotFound), errors.Is(err, blockstore.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, repo.ErrMissingBlocks), errors.Is(err, blockstore.ErrConflict), errors.Is(err, repo.ErrExists),
		errors.Is(err, repo.ErrLeased):
		return http.StatusConflict
	case errors.Is(err, repo.ErrFenced):
		// 412: the request's precondition (its lease epoch) no longer
		// holds; the client must not retry it as it is.
		return http.StatusPreconditionFailed
	case errors.Is(err, repo.ErrQuota), errors.Is(err, repo.ErrNoSpace):
		return http.StatusInsufficientStorage
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
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

// statusClientClosed is the status logged for a request whose client
// closed its connection before the answer (nginx's 499).
const statusClientClosed = 499

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
	if status >= 500 && r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		// The client went away (closed its connection) while the server
		// worked for it: its doing, not a server fault; nobody reads
		// this answer.
		status = statusClientClosed
	}
	level := slogLevel(status)
	var bodyErr *bodyError
	if errors.As(err, &bodyErr) || status == statusClientClosed {
		// The client's doing, or load it brought (503): a warning.
		level = slog.LevelWarn
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "client", r.RemoteAddr}
	if p, ok := r.Context().Value(principalKey{}).(repo.Principal); ok {
		attrs = append(attrs, "user", p.Name)
	}
	s.log.Log(r.Context(), level, "request failed", append(attrs, "err", err)...)
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "5")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
