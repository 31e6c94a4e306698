package writeback

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// What a workstation keeps of each clone it writes back, under its Store:
//
//	wb/CLONE/state      JSON state
//	wb/CLONE/base       the manifest the local overlay started from
//	wb/CLONE/committed  the manifest of the latest generation committed here
//	wb/CLONE/pending    JSON pending: a sealed generation not yet committed
//
// The pending generation's new blocks are in its outbox file until the
// commit (see outbox.go).
type state struct {
	Base      uint64 `json:"base"`      // generation the overlay started from
	Committed uint64 `json:"committed"` // latest generation committed from here (or Base)
	Epoch     uint64 `json:"epoch"`     // the lease epoch last held
	// Released is set when the lease of Epoch was given back after a
	// clean flush: nothing was left to sync under it, so the next epoch
	// (the server gives a new one to every new holding) is expected.
	Released        bool   `json:"released,omitempty"`
	Template        string `json:"template"`
	TemplateVersion uint64 `json:"template_version"`
	// Lost is set when another workstation took the lease over; the
	// changes made here since were saved as ConflictClone.
	Lost          bool   `json:"lost,omitempty"`
	ConflictClone string `json:"conflict_clone,omitempty"`
	// Removed is set (with Lost) when the server no longer had the
	// clone; what was not on the server then was saved as ConflictClone.
	Removed bool `json:"removed,omitempty"`
}

type pending struct {
	Parent     uint64 `json:"parent"`
	Manifest   []byte `json:"manifest"`              // unsigned manifest body
	OutboxFile string `json:"outbox_file,omitempty"` // its new blocks
	Blocks     int    `json:"blocks,omitempty"`      // how many
	// Outbox lists the new blocks kept as the Store's blocks by earlier
	// versions (before outbox files).
	Outbox []blockstore.ID `json:"outbox,omitempty"`
}

// pendingSummary is pending without its manifest, for a reader that
// needs only the counts (the JSON decoder skips the manifest unread).
type pendingSummary struct {
	OutboxFile string          `json:"outbox_file,omitempty"`
	Blocks     int             `json:"blocks,omitempty"`
	Outbox     []blockstore.ID `json:"outbox,omitempty"`
}

func key(clone, what string) string { return "wb/" + clone + "/" + what }

func getJSON(ctx context.Context, s blockstore.MetaStore, k string, v any) (bool, error) {
	b, err := s.GetMeta(ctx, k)
	if errors.Is(err, blockstore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(b, v)
}

func putOp(k string, v any) (blockstore.MetaOp, error) {
	b, err := json.Marshal(v)
	return blockstore.MetaOp{Key: k, Value: b}, err
}

func getManifest(ctx context.Context, s blockstore.MetaStore, k string) (*manifest.Manifest, error) {
	b, err := s.GetMeta(ctx, k)
	if err != nil {
		return nil, err
	}
	return manifest.Unmarshal(b)
}

func manifestOp(k string, m *manifest.Manifest) (blockstore.MetaOp, error) {
	b, err := m.MarshalBinary()
	return blockstore.MetaOp{Key: k, Value: b}, err
}

// syncStatus fills in what s says about unsynced changes: the pending
// generation's outbox size (file), changes not sealed yet, and a stall.
// It errs on the side of "not synced": a clone written here before this
// process started counts as unsealed until a seal has checked it.
func (c *cloneWB) syncStatus(s *Status, file string) {
	var sealed time.Time
	if file != "" {
		if fi, err := os.Stat(filepath.Join(c.w.outbox.dir, file)); err == nil {
			s.PendingBytes, sealed = fi.Size(), fi.ModTime()
		}
	}
	now, counts := c.overlayChanges()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stall != nil {
		s.Stalled, s.StalledSince = c.stall.Error(), c.stallSince
	}
	writtenHere := c.st.Epoch != 0 && !c.st.Lost
	switch {
	case !writtenHere && !c.wroteHere:
	case !counts || !c.checked:
		s.Unsealed = true
	default:
		s.Unsealed = now != c.syncedChanges
	}
	s.Synced = !s.Pending && !s.Unsealed && s.Stalled == ""
	if !s.Synced {
		s.UnsyncedSince = c.unsyncedSince(s, sealed)
	}
}
