package fs

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// extents over a base of 64-byte blocks (data, hole, data, data, hole)
// cut at baseSize, with local 16-byte sectors laid over it: seek and
// allocated must find data exactly where the base has a block below
// baseSize or a sector is local.
func TestExtents(t *testing.T) {
	const bs, ss = 64, 16
	d := blockstore.Sum([]byte("x"))
	base := &manifest.File{Blocks: []blockstore.ID{d, blockstore.Hole, d, d, blockstore.Hole}}
	cases := []struct {
		name           string
		size, baseSize int64
		local          []int64 // local sectors
		punched        []int64 // local sectors that are holes in the data file
		want           string  // data extents
		alloc          int64
	}{
		{"base only", 320, 320, nil, nil, "0-64 128-256", 192},
		{"cut by baseSize", 320, 150, nil, nil, "0-64 128-150", 86},
		{"grown past the base", 400, 320, nil, nil, "0-64 128-256", 192},
		{"local sectors in holes", 320, 320, []int64{4, 5, 19}, nil, "0-96 128-256 304-320", 240},
		{"local sectors over data", 320, 320, []int64{0, 9}, nil, "0-64 128-256", 192},
		{"no base", 100, 0, []int64{2}, nil, "32-48", 16},
		{"nothing", 100, 0, nil, nil, "", 0},
		{"punched sectors over data", 320, 320, []int64{0, 1, 2, 3, 9}, []int64{0, 1, 2, 3}, "128-256", 128},
		{"a punched sector in a run", 320, 320, []int64{4, 5, 6}, []int64{5}, "0-80 96-112 128-256", 224},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var bits bitmap
			for _, s := range c.local {
				bits.set(s)
			}
			x := extents{size: c.size, baseSize: c.baseSize, bs: bs, base: base, local: func(pos, limit int64) (bool, int64) {
				l, end := bits.run(pos/ss, (limit+ss-1)/ss)
				return l, min(limit, end*ss)
			}}
			if c.punched != nil {
				x.localData = func(pos, end int64, hole bool) int64 {
					for p := pos; p < end; p++ {
						if slices.Contains(c.punched, p/ss) == hole {
							return p
						}
					}
					return end
				}
			}
			var got []string
			for pos := int64(0); ; {
				dat, ok := x.seek(pos, false)
				if !ok {
					break
				}
				h, _ := x.seek(dat, true)
				if h <= dat {
					t.Fatalf("hole at %d not past data at %d", h, dat)
				}
				got = append(got, fmt.Sprintf("%d-%d", dat, h))
				pos = h
			}
			if s := strings.Join(got, " "); s != c.want {
				t.Errorf("data %q, want %q", s, c.want)
			}
			if a := x.allocated(); a != c.alloc {
				t.Errorf("allocated %d, want %d", a, c.alloc)
			}
			if _, err := x.seekData(c.size, false); err == nil {
				t.Errorf("SEEK_DATA at the size: no error")
			}
			for off := int64(0); off < c.size; off++ {
				h, err := x.seekData(off, true)
				if err != nil || h < off || h > c.size {
					t.Fatalf("SEEK_HOLE from %d: %d, %v", off, h, err)
				}
			}
		})
	}
}
