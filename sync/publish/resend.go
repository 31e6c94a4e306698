package publish

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/client"
)

// resendRounds is how many times a commit refused for missing blocks is
// answered by sending those blocks again. One round sends every block the
// server lacks; a second covers a server lost during the first.
const resendRounds = 3

// commit commits m. A server answers an upload once it has taken it and
// stores it after (repo.Accept); one killed in between leaves blocks it
// answered for unstored, and the publish, failing over, goes on through
// another server whose commit then names them missing (409). Those blocks
// are read from the tree again, checked against their IDs and sent, and
// the commit is made again: nothing was committed, so no version repeats.
func (p *publisher) commit(ctx context.Context, m *manifest.Manifest) (api.VersionInfo, error) {
	for round := 0; ; round++ {
		info, err := p.cfg.Server.Commit(ctx, m)
		if err == nil || round == resendRounds || !missingBlocks(err) {
			return info, err
		}
		p.log.Warn("the commit found blocks missing that the server had taken; sending them again", "template", m.Name, "err", err)
		if err := p.resend(ctx, m); err != nil {
			return api.VersionInfo{}, fmt.Errorf("sending again the blocks the commit lacked: %w", err)
		}
	}
}

// missingBlocks tells a commit refused because the server lacks blocks.
func missingBlocks(err error) bool {
	var he *client.HTTPError
	return errors.As(err, &he) && he.LacksBlocks()
}

// resend asks the server which of m's blocks it lacks, reads each from the
// first place m has it, and uploads it.
func (p *publisher) resend(ctx context.Context, m *manifest.Manifest) error {
	type at struct{ file, block int }
	where := make(map[blockstore.ID]at)
	var ids []blockstore.ID
	for i, f := range m.Files {
		if f.Link != "" {
			continue
		}
		for b, id := range f.Blocks {
			if id == blockstore.Hole {
				continue
			}
			if _, ok := where[id]; !ok {
				where[id] = at{i, b}
				ids = append(ids, id)
			}
		}
	}
	missing, err := p.cfg.Server.Missing(ctx, ids)
	if err != nil {
		return err
	}
	u := p.newUploadBody()
	buf := make([]byte, p.bs)
	var open *os.File
	openIdx := -1
	defer func() {
		if open != nil {
			open.Close()
		}
	}()
	for _, id := range missing {
		loc, ok := where[id]
		if !ok {
			return fmt.Errorf("%w: the server named block %s, which the template does not hold", api.ErrMalformed, id)
		}
		f := &m.Files[loc.file]
		if loc.file != openIdx {
			if open != nil {
				open.Close()
			}
			open, err = os.Open(filepath.Join(p.cfg.Dir, filepath.FromSlash(f.Path)))
			if err != nil {
				return err
			}
			openIdx = loc.file
		}
		off := int64(loc.block) * int64(p.bs)
		data := buf[:min(int64(p.bs), f.Size-off)]
		if _, err := open.ReadAt(data, off); err != nil {
			return fmt.Errorf("%s: read at %d: %w", f.Path, off, err)
		}
		if blockstore.Sum(data) != id {
			return fmt.Errorf("%s: the block at %d changed while publishing", f.Path, off)
		}
		// add keeps a pointer to the data when deferred: give each
		// block its own copy until the batch is sent.
		own := append([]byte(nil), data...)
		u.add(hashed{job: job{n: len(own), data: &own}, id: id}, p.cfg.Deferred)
		if u.size >= api.MaxUploadBytes-2*blockstore.MaxBlockSize {
			if err := p.send(ctx, u); err != nil {
				return err
			}
		}
	}
	if err := p.send(ctx, u); err != nil {
		return err
	}
	p.resMu.Lock()
	p.res.ResentBlocks += len(missing)
	p.resMu.Unlock()
	p.log.Info("sent again the blocks the commit lacked", "template", m.Name, "blocks", len(missing))
	return nil
}
