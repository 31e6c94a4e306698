package fs_test

import (
	"testing"

	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

// model is what a clone file must read as: its base entry, then a history
// of writes, cuts (truncations) and zeroings replayed over any window.
type model struct {
	base   *fstest.Entry // nil: a new file
	size   int64
	events []event
}

type event struct {
	kind     byte // 'w' write, 'c' cut at off, 'z' zero [off, end)
	off, end int64
	data     []byte
}

func newModel(base *fstest.Entry) *model {
	m := &model{base: base}
	if base != nil {
		m.size = base.Size
	}
	return m
}

func (m *model) write(off int64, data []byte) {
	m.events = append(m.events, event{'w', off, off + int64(len(data)), data})
	m.size = max(m.size, off+int64(len(data)))
}

func (m *model) truncate(size int64) {
	if size < m.size {
		m.events = append(m.events, event{kind: 'c', off: size})
	}
	m.size = size
}

func (m *model) zero(off, end int64, keep bool) {
	m.events = append(m.events, event{kind: 'z', off: off, end: end})
	if !keep {
		m.size = max(m.size, end)
	}
}

// read returns the bytes of [off, off+n) that exist.
func (m *model) read(off int64, n int) []byte {
	if off >= m.size {
		return []byte{}
	}
	p := make([]byte, min(int64(n), m.size-off))
	end := off + int64(len(p))
	if m.base != nil {
		m.base.ReadAt(p, off)
	}
	for _, ev := range m.events {
		switch ev.kind {
		case 'w':
			if lo, hi := max(off, ev.off), min(end, ev.end); lo < hi {
				copy(p[lo-off:hi-off], ev.data[lo-ev.off:])
			}
		case 'c':
			if ev.off < end {
				clear(p[max(0, ev.off-off):])
			}
		case 'z':
			if lo, hi := max(off, ev.off), min(end, ev.end); lo < hi {
				clear(p[lo-off : hi-off])
			}
		}
	}
	return p
}

// windows returns the ranges worth checking: the whole file when it is
// small, else the edges of every event and of the file.
func (m *model) windows() [][2]int64 {
	if m.size <= 16<<20 {
		return [][2]int64{{0, m.size + 1}}
	}
	const w = 200 << 10
	var out [][2]int64
	add := func(at int64) {
		out = append(out, [2]int64{max(0, at-w/2), w})
	}
	add(0)
	add(m.size)
	for _, ev := range m.events {
		add(ev.off)
		add(ev.end)
	}
	return out
}

// check compares the file n, open as h, with m.
func (m *model) check(t *testing.T, what string, n fs.Node, h fs.Handle) {
	t.Helper()
	a, err := n.Attr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != m.size {
		t.Fatalf("%s: size %d, want %d", what, a.Size, m.size)
	}
	for _, win := range m.windows() {
		sameBytes(t, what, readAt(t, h, win[0], int(win[1])), m.read(win[0], int(win[1])))
	}
}
