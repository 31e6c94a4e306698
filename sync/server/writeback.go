package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := readBody(w, r, api.MaxJSONBytes)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return nil
}

func queryUint(r *http.Request, name string) (uint64, error) {
	v, err := strconv.ParseUint(r.URL.Query().Get(name), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: query parameter %s: %v", errBadRequest, name, err)
	}
	return v, nil
}

func (s *Server) acquireLease(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	who, err := s.target(r, name, writeClone)
	if err != nil {
		return err
	}
	var req api.LeaseRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	l, err := s.repo.AcquireLease(r.Context(), who, name, req.Holder, time.Duration(req.TTL)*time.Second, req.Force)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, l)
}

func (s *Server) releaseLease(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	who, err := s.target(r, name, writeClone)
	if err != nil {
		return err
	}
	epoch, err := queryUint(r, "epoch")
	if err != nil {
		return err
	}
	if err := s.repo.ReleaseLease(r.Context(), who, name, r.URL.Query().Get("holder"), epoch); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) commitGeneration(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	who, err := s.target(r, name, writeClone)
	if err != nil {
		return err
	}
	parent, err := queryUint(r, "parent")
	if err != nil {
		return err
	}
	epoch, err := queryUint(r, "epoch")
	if err != nil {
		return err
	}
	body, err := readBody(w, r, api.MaxManifestBytes)
	if err != nil {
		return err
	}
	if enc := r.URL.Query().Get("encoding"); enc != "" {
		if body, err = s.decodeManifest(r, name, parent, enc, body); err != nil {
			return err
		}
	}
	m, err := manifest.Unmarshal(body)
	if err != nil {
		return err
	}
	if m.Name != name {
		return fmt.Errorf("%w: manifest names %q, URL %q", errBadRequest, m.Name, name)
	}
	if err := s.mayName(r, m); err != nil {
		return err
	}
	info, err := s.repo.CommitGeneration(r.Context(), who, m, parent, epoch)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, info)
}

// manifestDecodes bounds the manifests decoded against their parent at
// once: each holds the manifest rebuilt, and the parent decoded (for
// ManifestEncodingParent, a zstd window as large as both).
var manifestDecodes = make(chan struct{}, 2)

// decodeManifest decodes a generation's manifest sent as a delta against
// its parent's (api.ManifestEncodingXOR, or api.ManifestEncodingParent
// from older clients).
func (s *Server) decodeManifest(r *http.Request, name string, parent uint64, enc string, body []byte) ([]byte, error) {
	if enc != api.ManifestEncodingXOR && enc != api.ManifestEncodingParent {
		return nil, fmt.Errorf("%w: manifest encoding %q", errBadRequest, enc)
	}
	signed, err := s.repo.GenerationSigned(r.Context(), owner(r), name, parent)
	if err != nil {
		return nil, err
	}
	pm, _, err := manifest.Open(signed, s.repo.PublicKey())
	if err != nil {
		return nil, err
	}
	var dict []byte
	if enc == api.ManifestEncodingParent {
		dict = api.ManifestDict(pm)
		if dict == nil || api.DictID(dict) != r.URL.Query().Get("dict") {
			return nil, fmt.Errorf("%w: the manifest was compressed against another dictionary than generation %d's block IDs", errUnprocessable, parent)
		}
	}
	select {
	case manifestDecodes <- struct{}{}:
		defer func() { <-manifestDecodes }()
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	var out []byte
	if enc == api.ManifestEncodingXOR {
		out, err = api.DecodeManifestXOR(body, pm, api.MaxManifestBytes)
	} else {
		out, err = api.DecodeManifestDelta(body, dict, api.MaxManifestBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return out, nil
}

func (s *Server) generationSigned(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	who, err := s.target(r, name, readClone)
	if err != nil {
		return err
	}
	gen, err := strconv.ParseUint(r.PathValue("gen"), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: generation %q", errBadRequest, r.PathValue("gen"))
	}
	b, err := s.repo.GenerationSigned(r.Context(), who, name, gen)
	if err != nil {
		return err
	}
	return writeSigned(w, b)
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	who, err := s.target(r, name, writeClone)
	if err != nil {
		return err
	}
	var req api.SnapshotRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := manifest.ValidName(req.Name); err != nil {
		return fmt.Errorf("%w: snapshot name: %v", errBadRequest, err)
	}
	si, err := s.repo.Snapshot(r.Context(), who, name, req.Name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, si)
}

func (s *Server) revert(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	who, err := s.target(r, name, writeClone)
	if err != nil {
		return err
	}
	var req api.RevertRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	info, err := s.repo.Revert(r.Context(), who, name, req.Snapshot, req.Holder)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, info)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	who, err := s.target(r, name, readClone)
	if err != nil {
		return err
	}
	h, err := s.repo.History(r.Context(), who, name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, h)
}
