package publish

import (
	"context"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// collect records each hashed block in its file's entry and groups the data
// blocks not seen before into batches for upload. Only this goroutine
// writes the manifest's block lists.
func (p *publisher) collect(ctx context.Context, in <-chan hashed, out chan<- []hashed) error {
	batch := make([]hashed, 0, p.cfg.BatchBlocks)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		select {
		case out <- batch:
		case <-ctx.Done():
			return ctx.Err()
		}
		batch = make([]hashed, 0, p.cfg.BatchBlocks)
		return nil
	}
	for h := range in {
		p.files[h.file].Blocks[h.block] = h.id
		if h.data == nil {
			p.countHole(int64(h.n))
			continue
		}
		p.resMu.Lock()
		p.res.Blocks++
		p.resMu.Unlock()
		if _, dup := p.seen[h.id]; dup {
			p.reuse(h)
			continue
		}
		p.seen[h.id] = struct{}{}
		batch = append(batch, h)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// reuse accounts for a block that need not be sent.
func (p *publisher) reuse(h hashed) {
	p.resMu.Lock()
	p.res.ReusedBlocks++
	p.resMu.Unlock()
	p.done.Add(int64(h.n))
	p.pool.Put(h.data)
}

// upload asks the server which blocks of each batch it lacks, then
// compresses (or, Deferred, frames) and sends those.
func (p *publisher) upload(ctx context.Context, in <-chan []hashed) error {
	ids := make([]blockstore.ID, 0, p.cfg.BatchBlocks)
	// One body per uploader, sized for a whole batch, so appending never
	// reallocates.
	body := make([]byte, 0, min(p.cfg.BatchBlocks*(p.bs+64), api.MaxUploadBytes))
	frame := make([]byte, 0, p.bs+64)
	for batch := range in {
		ids = ids[:0]
		for _, h := range batch {
			ids = append(ids, h.id)
		}
		missing, err := p.cfg.Server.Missing(ctx, ids)
		if err != nil {
			return err
		}
		want := make(map[blockstore.ID]struct{}, len(missing))
		for _, id := range missing {
			want[id] = struct{}{}
		}
		body = body[:0]
		var newBytes int64
		for _, h := range batch {
			if _, ok := want[h.id]; !ok {
				p.reuse(h)
				continue
			}
			if p.cfg.Deferred {
				body = api.AppendDeferredBlock(body, h.id, *h.data)
			} else {
				frame = blockstore.Encode(frame[:0], *h.data)
				body = api.AppendBlock(body, h.id, frame)
			}
			newBytes += int64(h.n)
			if len(body) >= api.MaxUploadBytes-2*blockstore.MaxBlockSize {
				if err := p.send(ctx, body); err != nil {
					return err
				}
				body = body[:0]
			}
		}
		if err := p.send(ctx, body); err != nil {
			return err
		}
		for _, h := range batch {
			if _, ok := want[h.id]; ok {
				p.done.Add(int64(h.n))
				p.pool.Put(h.data)
			}
		}
		p.resMu.Lock()
		p.res.NewBlocks += len(missing)
		p.res.NewBytes += newBytes
		p.resMu.Unlock()
	}
	return nil
}

func (p *publisher) send(ctx context.Context, body []byte) error {
	if len(body) == 0 {
		return nil
	}
	if err := p.cfg.Server.Upload(ctx, body); err != nil {
		return err
	}
	p.sent.Add(int64(len(body)))
	return nil
}

// reportProgress calls cfg.Progress twice a second until stopped, and once
// more at the end.
func (p *publisher) reportProgress() (stop func()) {
	if p.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	snapshot := func() Progress {
		return Progress{TotalBytes: p.total.Load(), DoneBytes: p.done.Load(), SentBytes: p.sent.Load()}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.cfg.Progress(snapshot())
			case <-done:
				p.cfg.Progress(snapshot())
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}
