package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/repo"
)

func slogLevel(status int) slog.Level {
	if status >= 500 {
		return slog.LevelError
	}
	return slog.LevelInfo
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// readBody reads a whole request body of at most max bytes, into room
// made once for its Content-Length when it has one.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	return readBodyInto(w, r, max, nil, nil)
}

// readBodyInto reads a request body of at most max bytes into buf's
// storage, sized by Content-Length when the client sent one. Each time
// more has arrived, piece (if not nil) is called with the body so far;
// the storage does not move between calls. Without Content-Length, piece
// sees the whole body once.
func readBodyInto(w http.ResponseWriter, r *http.Request, max int64, buf []byte, piece func(have []byte) error) ([]byte, error) {
	// Take the body's bytes from the server's budget before making room.
	if err := admitBody(r); err != nil {
		return buf[:0], err
	}
	rd := http.MaxBytesReader(w, r.Body, max)
	if n := r.ContentLength; n > 0 && n <= max {
		if int64(cap(buf)) < n {
			buf = diskio.HugeBuffer(int(n))[:0]
		}
		buf = buf[:n]
		for have := 0; have < len(buf); {
			k, err := io.ReadAtLeast(rd, buf[have:], min(readPiece, len(buf)-have))
			have += k
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return buf[:0], err
			}
			if piece != nil {
				if err := piece(buf[:have]); err != nil {
					return buf[:0], err
				}
			}
		}
		return buf, nil
	}
	b := bytes.NewBuffer(buf)
	if _, err := b.ReadFrom(rd); err != nil {
		return b.Bytes(), err
	}
	if piece != nil {
		if err := piece(b.Bytes()); err != nil {
			return b.Bytes(), err
		}
	}
	return b.Bytes(), nil
}

// readPiece is how much of a body readBodyInto reads before it hands on
// what arrived: a few blocks, little enough to be in the CPU's cache.
const readPiece = 256 << 10

// nameVersion parses the {name} and {version} path values; a missing or
// "latest" version is 0.
func nameVersion(r *http.Request) (string, uint64, error) {
	name := r.PathValue("name")
	if err := manifest.ValidName(name); err != nil {
		return "", 0, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	vs := r.PathValue("version")
	if vs == "" || vs == "latest" {
		return name, 0, nil
	}
	v, err := strconv.ParseUint(vs, 10, 64)
	if err != nil || v == 0 {
		return "", 0, fmt.Errorf("%w: version %q is not a positive number or \"latest\"", errBadRequest, vs)
	}
	return name, v, nil
}

func (s *Server) pubKey(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err := w.Write(s.repo.PublicKey())
	return err
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	list, err := s.repo.List(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []api.TemplateInfo{}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) error {
	name, v, err := nameVersion(r)
	if err != nil {
		return err
	}
	info, err := s.repo.Version(r.Context(), name, v)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, info)
}

func (s *Server) signedManifest(w http.ResponseWriter, r *http.Request) error {
	name, v, err := nameVersion(r)
	if err != nil {
		return err
	}
	b, err := s.repo.Signed(r.Context(), name, v)
	if err != nil {
		return err
	}
	return writeSigned(w, b)
}

// writeSigned sends a signed manifest.
func writeSigned(w http.ResponseWriter, b []byte) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, err := w.Write(b)
	return err
}

func (s *Server) commit(w http.ResponseWriter, r *http.Request) error {
	name, _, err := nameVersion(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r, api.MaxManifestBytes)
	if err != nil {
		return err
	}
	m, err := manifest.Unmarshal(body)
	if err != nil {
		return err
	}
	if m.Name != name {
		return fmt.Errorf("%w: manifest names template %q, URL %q", errBadRequest, m.Name, name)
	}
	info, err := s.repo.Commit(r.Context(), m)
	if err != nil {
		return err
	}
	s.pushOnce(r.Context(), info.Name, info.Version)
	return writeJSON(w, http.StatusCreated, info)
}

func (s *Server) removeTemplate(w http.ResponseWriter, r *http.Request) error {
	name, v, err := nameVersion(r)
	if err != nil {
		return err
	}
	if r.PathValue("version") == "latest" {
		return fmt.Errorf("%w: remove a version by its number", errBadRequest)
	}
	if _, err := s.repo.Remove(r.Context(), name, v); err != nil {
		return err
	}
	// Removing is what frees space, so collect right away.
	res, err := s.repo.GC(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) gc(w http.ResponseWriter, r *http.Request) error {
	res, err := s.repo.GC(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) missing(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, api.MaxIDsPerRequest*blockstore.IDSize)
	if err != nil {
		return err
	}
	ids, err := api.DecodeIDs(body, api.MaxIDsPerRequest)
	if err != nil {
		return err
	}
	// A block the caller may not read is missing to them, whether or
	// not it is stored: the answer reveals nothing of others' data, and
	// the upload that follows proves they hold its bytes.
	no, err := s.unreadable(r, ids)
	if err != nil {
		return err
	}
	ask := ids
	if len(no) > 0 {
		hidden := make(map[blockstore.ID]struct{}, len(no))
		for _, id := range no {
			hidden[id] = struct{}{}
		}
		ask = slices.DeleteFunc(slices.Clone(ids), func(id blockstore.ID) bool { _, ok := hidden[id]; return ok })
	}
	missing, err := s.repo.Missing(r.Context(), ask)
	if err != nil {
		return err
	}
	if len(no) > 0 {
		missing = inOrder(ids, append(missing, no...))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err = w.Write(api.AppendIDs(nil, missing))
	return err
}

// inOrder returns the IDs of some in the order ids has them.
func inOrder(ids, some []blockstore.ID) []blockstore.ID {
	want := make(map[blockstore.ID]struct{}, len(some))
	for _, id := range some {
		want[id] = struct{}{}
	}
	out := make([]blockstore.ID, 0, len(some))
	for _, id := range ids {
		if _, ok := want[id]; ok {
			delete(want, id)
			out = append(out, id)
		}
	}
	return out
}

// unreadable returns the IDs of ids the request's principal may not read:
// none for an admin; for a user, the blocks of no template, none of their
// clones and none of the clones shared with their groups
// (repo.UnreadableBy).
func (s *Server) unreadable(r *http.Request, ids []blockstore.ID) ([]blockstore.ID, error) {
	p := principal(r)
	if p.Role == api.RoleAdmin {
		return nil, nil
	}
	return s.repo.UnreadableBy(r.Context(), p.Name, s.groupsOf(p), ids)
}

// unreadableNow is unreadable for a read of blocks, which asks again
// after a refusal when another server committed meanwhile
// (repo.UnreadableNow).
func (s *Server) unreadableNow(r *http.Request, ids []blockstore.ID) ([]blockstore.ID, error) {
	if p := principal(r); p.Role != api.RoleAdmin {
		return s.repo.UnreadableNow(r.Context(), p.Name, s.groupsOf(p), ids)
	}
	return nil, nil
}

// uploader is whom the request's uploads are charged to and granted to
// (repo.AcceptFor): "" for an admin.
func uploader(r *http.Request) string {
	if p := principal(r); p.Role != api.RoleAdmin {
		return p.Name
	}
	return ""
}

func (s *Server) fetch(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, api.MaxFetchIDs*blockstore.IDSize)
	if err != nil {
		return err
	}
	ids, err := api.DecodeIDs(body, api.MaxFetchIDs)
	if err != nil {
		return err
	}
	ctx := r.Context()
	// What the caller may not read is not found, as if it did not exist.
	no, err := s.unreadableNow(r, ids)
	if err != nil {
		return err
	}
	if len(no) > 0 {
		return fmt.Errorf("block %s: %w", no[0], blockstore.ErrNotFound)
	}
	// Refuse up front what we lack, while a status can still be sent.
	missing, err := s.repo.Missing(ctx, ids)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("block %s: %w", missing[0], blockstore.ErrNotFound)
	}
	// A background fetch waits for its turn and paces itself behind
	// readers' fetches (background.go).
	background := r.Header.Get(api.HeaderPriority) == api.PriorityBackground
	if background {
		release, err := s.bg.turn(ctx)
		if err != nil {
			return nil // the client went away while it waited
		}
		defer release()
	} else {
		defer s.bg.readerStart()()
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	var out io.Writer = w
	if background {
		out = pacedWriter{w: w, bg: s.bg, ctx: ctx}
	}
	bw := bufio.NewWriterSize(out, 256<<10)
	// Frames reads the blocks in windows, a run of them in the object
	// store with one ranged GET, and hands them over in order.
	var rec []byte
	sent, gone := 0, false
	err = s.repo.Frames(ctx, ids, func(i int, frame []byte) error {
		rec = api.AppendBlock(rec[:0], ids[i], frame)
		if _, err := bw.Write(rec); err != nil {
			gone = true // client went away
			return err
		}
		sent++
		return nil
	})
	switch {
	case gone:
		return nil
	case err != nil && sent == 0:
		return err
	case err != nil:
		if r.Context().Err() != nil {
			// The client went away mid-stream (its timeout, or it was
			// closed): nobody reads the rest, and it is no fault of the
			// store.
			s.log.Warn("fetch: client went away mid-response", "blocks_sent", sent, "client", r.RemoteAddr, "err", err)
			return nil
		}
		// The status is gone; cut the stream so the client sees a
		// truncated batch instead of a short one that looks whole.
		s.log.Error("fetch: block unreadable, aborting response", "block", ids[sent], "client", r.RemoteAddr, "err", err)
		panic(http.ErrAbortHandler)
	}
	if err := bw.Flush(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// uploadBufs recycles upload bodies: reading 16 MiB batches into fresh
// buffers made the server spend most of its time clearing memory, and a
// sync.Pool, emptied by every other garbage collection, still left 4% of
// a publish's CPU time in page faults on new ones (perf). A body that
// finds the list full, or is larger than a client's batch
// (uploadBufMax), is left to the collector: the list never keeps more
// than 8 of those.
var uploadBufs = make(chan []byte, 8)

// uploadBufMax is the largest body kept for reuse: a writeback batch
// (16 MiB and a block) with its padding records; publish sends 8 MiB.
const uploadBufMax = 24 << 20

// upload takes a batch of blocks, each checked (repo.CheckUpload) as soon
// as it has arrived: hashed right after the socket's copy put it in the
// CPU's cache instead of after the whole 16 MiB batch, when the server's
// hashing ran at half the speed of the client's. It answers once the
// repository has accepted the batch (repo.Accept), which stores it durably
// before any commit that names its blocks.
//
// Records in delta frames (blockstore.IsDelta) are checked for form as
// they arrive and resolved against their bases once the batch is whole
// (repo.PutDeltas, after the whole blocks are accepted, so that a delta
// may build on a block of the same batch). Refused deltas give 409 or 422
// naming them (api.DeltaRefusedError); the rest of the batch is taken.
func (s *Server) upload(w http.ResponseWriter, r *http.Request) error {
	var buf []byte
	select {
	case buf = <-uploadBufs:
	default:
	}
	var (
		blocks, deltas []blockstore.Block
		p              api.BatchParser
	)
	body, err := readBodyInto(w, r, api.MaxUploadBytes, buf[:0], func(have []byte) error {
		return p.Feed(have, func(id blockstore.ID, frame []byte) error {
			b := blockstore.Block{ID: id, Frame: frame}
			if blockstore.IsDelta(frame) {
				if len(deltas) == api.MaxDeltasPerUpload {
					return fmt.Errorf("%w: more than %d delta records in one upload", errBadRequest, api.MaxDeltasPerUpload)
				}
				if _, err := blockstore.ParseDelta(frame); err != nil {
					return fmt.Errorf("block %s: %w", id.Short(), err)
				}
				deltas = append(deltas, b)
				return nil
			}
			if err := repo.CheckUpload(b); err != nil {
				return err
			}
			blocks = append(blocks, b)
			return nil
		})
	})
	release := func() {
		if cap(body) > uploadBufMax {
			return
		}
		select {
		case uploadBufs <- body[:0]:
		default:
		}
	}
	if err == nil {
		err = p.End(body)
	}
	if err != nil {
		release()
		return err
	}
	// The frames alias body: it goes back once the repository has
	// written the blocks and PutDeltas is done with the deltas.
	var holds atomic.Int32
	holds.Store(2)
	drop := func() {
		if holds.Add(-1) == 0 {
			release()
		}
	}
	if err := s.repo.AcceptFor(r.Context(), uploader(r), blocks, drop); err != nil {
		drop()
		drop()
		return err
	}
	err = s.repo.PutDeltasFor(r.Context(), uploader(r), deltas)
	drop()
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
