package repo

import (
	"context"
	"sync"

	"github.com/dvfs-project/dvfs/blockstore"
)

// frameWindow is how many blocks Frames asks the store for at once: 64
// blocks of 64 KiB, so that a fetch holds about 4 MiB of frames (and the
// store one ranged GET of at most as much) whatever it asks for, with
// many clients served at once.
const frameWindow = 64

// Frames calls fn(i, frame) with the frame of each of ids, in order, as
// Frame gives it. A store that reads runs of frames at once
// (blockstore.FrameRunGetter: s3store reads the frames that lie back to
// back in a pack with one ranged GET) is asked for frameWindow blocks at
// a time; deferred frames are compressed as Frame does, and the blocks it
// leaves (deltas, corrupt or moved ones) go through Frame. On a block it
// cannot read, Frames returns Frame's error for it after fn has had every
// block before it. fn's error stops Frames, which returns it. frame is
// valid only during fn.
func (r *Repo) Frames(ctx context.Context, ids []blockstore.ID, fn func(i int, frame []byte) error) error {
	bp := frames.Get().(*[]byte)
	defer frames.Put(bp)
	rg, ok := r.store.(blockstore.FrameRunGetter)
	if !ok {
		for i, id := range ids {
			frame, err := r.Frame(ctx, id, (*bp)[:0])
			if err != nil {
				return err
			}
			*bp = frame
			if err := fn(i, frame); err != nil {
				return err
			}
		}
		return nil
	}
	w := windows.Get().(*window)
	defer windows.Put(w)
	for lo := 0; lo < len(ids); lo += frameWindow {
		hi := min(lo+frameWindow, len(ids))
		if err := w.fill(ctx, rg, ids[lo:hi]); err != nil {
			return err
		}
		for k, id := range ids[lo:hi] {
			var frame []byte
			if w.start[k] >= 0 {
				frame = w.buf[w.start[k]:w.end[k]]
			} else {
				var err error
				if frame, err = r.Frame(ctx, id, (*bp)[:0]); err != nil {
					return err
				}
				*bp = frame
			}
			if err := fn(lo+k, frame); err != nil {
				return err
			}
		}
	}
	return nil
}

// window holds the frames of up to frameWindow blocks that a
// FrameRunGetter read, back to back in buf: block k's is
// buf[start[k]:end[k]], or start[k] is -1 when the store left it.
type window struct {
	buf        []byte
	start, end [frameWindow]int
}

var windows = sync.Pool{New: func() any { return new(window) }}

// fill reads ids (at most frameWindow) into w, deferred frames
// compressed.
func (w *window) fill(ctx context.Context, rg blockstore.FrameRunGetter, ids []blockstore.ID) error {
	w.buf = w.buf[:0]
	for k := range ids {
		w.start[k], w.end[k] = -1, 0
	}
	return rg.GetFrameRun(ctx, ids, func(k int, frame []byte) error {
		w.start[k] = len(w.buf)
		if !blockstore.Deferred(frame) {
			w.buf = append(w.buf, frame...)
		} else if _, plain, err := blockstore.SplitFrame(frame); err == nil {
			w.buf = blockstore.Encode(w.buf, plain)
		} else {
			w.start[k] = -1 // Frame says why
			return nil
		}
		w.end[k] = len(w.buf)
		return nil
	})
}
