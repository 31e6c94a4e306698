package multicast

import (
	"context"
	"time"
)

// readAheadBlocks bounds the frames read ahead of the sweep: 64 blocks of
// 64 KiB are 4 MiB, 34 ms of sending at 1 Gbit/s.
const readAheadBlocks = 64

// readAhead reads the frames of the blocks the sweep sends next on a
// goroutine of its own, so that a slow read does not stop the sending: a
// template not in the page cache, on a disk busy with other writes,
// held the sender up for milliseconds at a time, and every stall past
// the pacer's slack was lost for good (1.6-4.6 s of a 20 s session to 8
// receivers on the bench). Only fresh blocks the sweep has yet to reach
// are read ahead: each of them goes out in this sweep or the next, so a
// frame read ahead is always used. Repairs and blocks a late joiner adds
// behind the read-ahead are read when they are sent, as before.
//
// The frames ready to send are in Sender.ahead, under Sender.mu.
type readAhead struct {
	s     *Sender
	kick  chan struct{} // the sender took a frame, or the sweep moved
	free  chan []byte   // buffers to read into
	sweep uint16        // the sweep pos belongs to
	pos   uint32        // the next block to look at
}

func newReadAhead(s *Sender) *readAhead {
	ra := &readAhead{s: s, kick: make(chan struct{}, 1), free: make(chan []byte, readAheadBlocks+1)}
	s.ahead = make(map[uint32][]byte, readAheadBlocks)
	return ra
}

// run reads ahead until ctx ends.
func (ra *readAhead) run(ctx context.Context) {
	s := ra.s
	for ctx.Err() == nil {
		blk, ok := ra.nextBlock()
		if !ok {
			select {
			case <-ctx.Done():
			case <-ra.kick:
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		var buf []byte
		select {
		case buf = <-ra.free:
		default:
		}
		frame, err := s.cfg.Source.Frame(ctx, s.ids[blk], buf[:0])
		if err != nil {
			// The sender reads it again when it sends it, and reports
			// the error then.
			continue
		}
		s.mu.Lock()
		// Still to be sent whole: next() has not taken it meanwhile.
		if s.fresh[blk] {
			s.ahead[blk] = frame
			frame = nil
		}
		s.mu.Unlock()
		if frame != nil {
			ra.recycle(frame)
		}
	}
}

// nextBlock finds the next fresh block at or after the sweep's position
// that is not read yet, while fewer than readAheadBlocks are ready.
func (ra *readAhead) nextBlock() (uint32, bool) {
	s := ra.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ahead) >= readAheadBlocks {
		return 0, false
	}
	if ra.sweep != s.sweep || ra.pos < s.pos {
		ra.sweep, ra.pos = s.sweep, s.pos
	}
	n := uint32(len(s.ids))
	for ; ra.pos < n; ra.pos++ {
		if s.fresh[ra.pos] {
			if _, ok := s.ahead[ra.pos]; !ok {
				ra.pos++
				return ra.pos - 1, true
			}
		}
	}
	return 0, false
}

// recycle gives a frame's buffer back for reading ahead.
func (ra *readAhead) recycle(b []byte) {
	if cap(b) == 0 {
		return
	}
	select {
	case ra.free <- b[:0]:
	default:
	}
}

// take returns the frame of blk if it was read ahead. The sender hands
// its previous frame buffer back with recycle.
func (ra *readAhead) take(blk uint32) ([]byte, bool) {
	s := ra.s
	s.mu.Lock()
	f, ok := s.ahead[blk]
	if ok {
		delete(s.ahead, blk)
	}
	s.mu.Unlock()
	select {
	case ra.kick <- struct{}{}:
	default:
	}
	return f, ok
}
