//go:build windows || (linux && cgo && fuse3)

package cgofuse

import "github.com/dvfs-project/dvfs/fs"

// handle is an open file: cgofuse passes its number (fh) back.
type handle struct {
	node fs.Node
	h    fs.Handle
}

// add numbers h.
func (f *fsys) add(h *handle) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	f.handles[f.next] = h
	return f.next
}

// handle returns the open file numbered fh, or nil.
func (f *fsys) handle(fh uint64) *handle {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.handles[fh]
}

// remove forgets the open file numbered fh and returns it.
func (f *fsys) remove(fh uint64) *handle {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.handles[fh]
	delete(f.handles, fh)
	return h
}
