package badgerstore

import (
	"os"
	"sync"
)

// groupCommit makes the Puts that arrive while one is being made durable
// durable together. A Put's payloads must be synced before its index
// entries are committed, and a synced badger commit costs two more syncs
// (its memtable's log and the value log, even when nothing went there).
// Each is a flush of the disk's cache. Grouped, the Puts that finish
// writing during one round of flushes share the next, and meanwhile
// others write: a server storing uploads on several goroutines keeps the
// disk writing instead of waiting for one Put's flushes after another.
//
// The first writer to find no round running leads: it syncs the packs of
// every writer queued so far, commits all their entries in one batch, and
// wakes them. Writers queued meanwhile wait for the next leader, one of
// themselves.
type groupCommit struct {
	mu      sync.Mutex
	cond    sync.Cond
	queue   []*indexWrite
	leading bool
}

// An indexWrite is one Put's part of a round: the pack handle its
// payloads went to, and its index entries.
type indexWrite struct {
	pack       *os.File
	keys, vals [][]byte

	done bool // under groupCommit.mu
	err  error
}

// commit queues ws and returns once a round that included them is over,
// with that round's error. round makes a queue of writes durable.
func (g *groupCommit) commit(ws []*indexWrite, round func([]*indexWrite) error) error {
	g.mu.Lock()
	if g.cond.L == nil {
		g.cond.L = &g.mu
	}
	g.queue = append(g.queue, ws...)
	last := ws[len(ws)-1] // the queue is served in order
	for g.leading && !last.done {
		g.cond.Wait()
	}
	if last.done {
		g.mu.Unlock()
		return last.err
	}
	g.leading = true
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()

	err := round(batch)

	g.mu.Lock()
	for _, x := range batch {
		x.done, x.err = true, err
	}
	g.leading = false
	g.cond.Broadcast()
	g.mu.Unlock()
	return err
}
