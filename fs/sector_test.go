package fs_test

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

const sector = 4096

// sealOnce seals clone alice and returns the entry at path.
func sealOnce(t *testing.T, fsys *fs.FS, path string) fs.SealedEntry {
	t.Helper()
	var out fs.SealedEntry
	err := fsys.Seal(ctx, "alice", func(ents []fs.SealedEntry, _ *fs.SealReader) error {
		for _, e := range ents {
			if e.Path == path {
				out = e
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// allocated is the disk space the file at path takes.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := diskio.Allocated(f)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSectorWrites: a whole-sector write into a block the overlay lacks
// reads nothing of the base and stores only that sector; a write into
// part of a sector copies that sector up; reads merge the sectors over the
// base; Seal reports the blocks and sectors written since the last Seal.
func TestSectorWrites(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	want := fstest.VMEntry(2, "disk.vmdk").Bytes()
	h := openW(t, fsys, root+"/disk.vmdk")
	ino := sealOnce(t, fsys, "disk.vmdk").Ino
	data := fsys.DataPath("alice", ino)

	reads := e.world.Blocks.Reads()
	p := bytes.Repeat([]byte{0xa5}, sector)
	writeAt(t, h, p, 3*bs+sector) // sector 1 of block 3
	copy(want[3*bs+sector:], p)
	if got := e.world.Blocks.Reads() - reads; got != 0 {
		t.Errorf("a whole-sector write read %d base blocks", got)
	}
	if got := allocated(t, data); got != sector {
		t.Errorf("data file takes %d bytes after one 4 KiB write, want %d", got, sector)
	}

	// 100 bytes inside sector 3 of block 3: that sector is copied up.
	q := bytes.Repeat([]byte{0x5a}, 100)
	writeAt(t, h, q, 3*bs+3*sector+200)
	copy(want[3*bs+3*sector+200:], q)
	if got := allocated(t, data); got != 2*sector {
		t.Errorf("data file takes %d bytes after a partial write, want %d", got, 2*sector)
	}
	// A write across a sector boundary, into a local and a new sector.
	r := bytes.Repeat([]byte{0x33}, 300)
	writeAt(t, h, r, 3*bs+2*sector-150)
	copy(want[3*bs+2*sector-150:], r)

	sameBytes(t, "block 3", readAt(t, h, 3*bs, int(bs)), want[3*bs:4*bs])
	sameBytes(t, "whole file", readAll(t, fsys, root+"/disk.vmdk"), want)

	en := sealOnce(t, fsys, "disk.vmdk")
	if len(en.Dirty) != 1 || en.Dirty[0] != 3 || en.DirtySectors[0] != 0b1110 || en.SectorSize != sector {
		t.Fatalf("sealed: dirty %v sectors %b (sector %d), want [3] 1110", en.Dirty, en.DirtySectors, en.SectorSize)
	}
	if en.Local[0] != 1<<3 {
		t.Fatalf("local blocks %b, want block 3", en.Local)
	}
	// After a Seal only what is written since counts.
	writeAt(t, h, p, 3*bs+5*sector)
	copy(want[3*bs+5*sector:], p)
	writeAt(t, h, p[:10], 7*bs) // sector 0 of block 7
	copy(want[7*bs:], p[:10])
	en = sealOnce(t, fsys, "disk.vmdk")
	if len(en.Dirty) != 2 || en.Dirty[0] != 3 || en.DirtySectors[0] != 1<<5 || en.Dirty[1] != 7 || en.DirtySectors[1] != 1 || en.Shrunk {
		t.Fatalf("sealed again: dirty %v sectors %b shrunk %v", en.Dirty, en.DirtySectors, en.Shrunk)
	}
	// Seal's read merges the sectors over the base.
	err := fsys.Seal(ctx, "alice", func(_ []fs.SealedEntry, sr *fs.SealReader) error {
		read := sr.ReadBlock
		b, err := read(ino, 3, nil)
		if err != nil {
			return err
		}
		sameBytes(t, "sealed block 3", b, want[3*bs:4*bs])
		// ReadSectors: the local sectors alone, in mask order, runs of
		// adjacent sectors and single ones.
		got, err := sr.ReadSectors(ino, 3, 0b101110, []byte("x"))
		if err != nil {
			return err
		}
		var wantSec []byte
		for _, k := range []int{1, 2, 3, 5} {
			wantSec = append(wantSec, want[3*bs+k*sector:3*bs+(k+1)*sector]...)
		}
		sameBytes(t, "sectors 1-3 and 5 of block 3", got, append([]byte("x"), wantSec...))
		if _, err := sr.ReadSectors(ino, 3, 0b11, nil); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("ReadSectors of a sector not local: %v, want ErrInvalid", err)
		}
		if _, err := sr.ReadSectors(ino, 1<<40, 1, nil); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("ReadSectors past the size: %v, want ErrInvalid", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Survives a remount: every local sector counts as written once.
	if err := h.Sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Close(ctx); err != nil {
		t.Fatal(err)
	}
	fsys = e.mount(t)
	sameBytes(t, "after remount", readAll(t, fsys, root+"/disk.vmdk"), want)
	en = sealOnce(t, fsys, "disk.vmdk")
	if len(en.Dirty) != 2 || en.DirtySectors[0] != 0b101110 || en.DirtySectors[1] != 1 {
		t.Fatalf("after remount: dirty %v sectors %b", en.Dirty, en.DirtySectors)
	}
}

// TestSectorShrink: a cut is reported, and the block it cuts short counts
// as wholly changed.
func TestSectorShrink(t *testing.T) {
	fsys := newEnv(t).mount(t)
	h := openW(t, fsys, root+"/disk.vmdk")
	writeAt(t, h, []byte("x"), 2*bs)
	sealOnce(t, fsys, "disk.vmdk")
	sz := int64(2*bs + 100)
	if _, err := walk(t, fsys, root+"/disk.vmdk").(fs.Setter).SetAttr(ctx, fs.SetAttr{Size: &sz}); err != nil {
		t.Fatal(err)
	}
	en := sealOnce(t, fsys, "disk.vmdk")
	if !en.Shrunk || len(en.Dirty) != 1 || en.Dirty[0] != 2 || en.DirtySectors[0] != 0xffff {
		t.Fatalf("after a cut: shrunk %v dirty %v sectors %b", en.Shrunk, en.Dirty, en.DirtySectors)
	}
	if en = sealOnce(t, fsys, "disk.vmdk"); en.Shrunk || len(en.Dirty) != 0 {
		t.Fatalf("a second seal: shrunk %v dirty %v", en.Shrunk, en.Dirty)
	}
}

// TestFormatV1Overlay: an overlay whose metadata was written in format 1
// (a bitmap bit per block, before sectors) loads, converts once, and reads
// as it did.
func TestFormatV1Overlay(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	want := fstest.VMEntry(2, "disk.vmdk").Bytes()
	h := openW(t, fsys, root+"/disk.vmdk")
	for _, b := range []int64{1, 2, 9} { // whole blocks, as format 1 held them
		p := bytes.Repeat([]byte{byte(b)}, int(bs))
		writeAt(t, h, p, b*bs)
		copy(want[b*bs:], p)
	}
	ino := sealOnce(t, fsys, "disk.vmdk").Ino
	if err := h.Sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Rewrite the metadata as format 1 wrote it: header 'h' 1 version
	// blocksize; bitmap chunk 0 with bits 1, 2 and 9.
	var hdr []byte
	err := e.meta.ListMeta(ctx, "ovl/alice/hdr", func(_ string, v []byte) error { hdr = append([]byte(nil), v...); return nil })
	if err != nil || len(hdr) < 2 || hdr[1] != 2 {
		t.Fatalf("header %x, %v", hdr, err)
	}
	v1 := []byte{'h', 1}
	v1 = append(v1, hdr[2:len(hdr)-2]...) // drop the sector size (two uvarint bytes for 4096)
	chunkKey := "ovl/alice/b/" + hex16(ino) + "/00000000"
	ops := []blockstore.MetaOp{
		{Key: "ovl/alice/hdr", Value: v1},
		{Key: chunkKey, Value: []byte{0b110, 0b10}},
	}
	// Drop the sector chunks format 2 wrote.
	err = e.meta.ListMeta(ctx, "ovl/alice/b/", func(k string, _ []byte) error {
		if k != chunkKey {
			ops = append(ops, blockstore.MetaOp{Key: k})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.meta.CommitMeta(ctx, ops...); err != nil {
		t.Fatal(err)
	}
	fsys = e.mount(t)
	sameBytes(t, "format 1 overlay", readAll(t, fsys, root+"/disk.vmdk"), want)
	en := sealOnce(t, fsys, "disk.vmdk")
	if len(en.Dirty) != 3 || en.DirtySectors[0] != 0xffff || en.Local[0] != 1<<1|1<<2|1<<9 {
		t.Fatalf("converted: dirty %v sectors %b local %b", en.Dirty, en.DirtySectors, en.Local)
	}
	hb, err := e.meta.GetMeta(ctx, "ovl/alice/hdr")
	if err != nil || hb[1] != 2 {
		t.Fatalf("header after load: %x, %v", hb, err)
	}
	if err := fsys.Close(ctx); err != nil {
		t.Fatal(err)
	}
	fsys = e.mount(t) // and again, now in format 2
	sameBytes(t, "converted overlay", readAll(t, fsys, root+"/disk.vmdk"), want)
	if _, err := os.Stat(fsys.DataPath("alice", ino)); err != nil {
		t.Fatal(err)
	}
}

func hex16(v uint64) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 16)
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&15]
		v >>= 4
	}
	return string(b)
}
