//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"time"

	"github.com/cloudsoda/go-smb2"
)

// The storm workload: one workstation booting its VM from a linked clone
// and using it briefly, as the guest's disk sees it.
//
// It is modelled on published measurements of VM boot I/O: booting reads
// a small part of the image (a few hundred MB of a multi-GB disk; Razavi
// and Kielmann, "Scalable Virtual Machine Deployment Using VM Image
// Caches", SC 2013, measured boot working sets of tens to a few hundred
// MB per image), in runs of 64 KiB-1 MiB requests (guest readahead and
// large sequential reads of executables and libraries); the guest writes
// tens of MB in small (4 KiB) requests, and what reaches the storage
// server from a virtual disk is smaller and more random than a physical
// client's I/O (Tarasov, Hildebrand, Kuenning and Zadok, "Virtual
// Machine Workloads: The Case for New Benchmarks for NAS", FAST 2013).
// At shutdown the guest flushes: one fsync at the end. The -locality
// variant's clustering (a journal written in order, a few hot metadata
// regions) is this benchmark's model of a guest file system, not a
// measured distribution.
//
// Every size is a flag of `bench storm`; the defaults are the issue's
// (issue 20) scaled to this machine.
type stormWork struct {
	Seed     uint64 `json:"seed"`
	Size     int64  `json:"size"`  // disk size
	Read     int64  `json:"read"`  // bytes read
	Write    int64  `json:"write"` // bytes written, in 4 KiB writes
	Locality bool   `json:"locality"`
}

// wop is one request of the workload.
type wop struct {
	off   int64
	n     int
	write bool
	key   float64 // when in the session it comes (sort order)
}

const stormBlock = 4096

var stormReadSizes = []int{64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20}

// ops returns the workload's requests in order. The same seed gives the
// same requests on every target.
func (w stormWork) ops() []wop {
	r := rand.New(rand.NewPCG(w.Seed, 0x5707))
	blocks := w.Size / stormBlock
	var ops []wop
	// Reads: runs of 256 KiB-8 MiB at random 4 KiB-aligned offsets, each
	// run in requests of 64 KiB-1 MiB. The boot comes first: a run's
	// place in the session is biased early (u^2).
	for read := int64(0); read < w.Read; {
		runLen := min(int64(256<<10+r.IntN(32)*(256<<10)), w.Read-read, w.Size)
		runLen = max(stormBlock, runLen/stormBlock*stormBlock)
		off := r.Int64N(max(1, (w.Size-runLen)/stormBlock+1)) * stormBlock
		u := r.Float64()
		for done := int64(0); done < runLen; {
			n := min(int64(stormReadSizes[r.IntN(len(stormReadSizes))]), runLen-done)
			ops = append(ops, wop{off: off + done, n: int(n), key: u * u})
			done += n
		}
		read += runLen
	}
	// Writes: 4 KiB each. Without locality at uniformly random blocks;
	// with it 60% append to a journal (an 8 MiB region written in
	// order, wrapping), 30% land in one of a few hot 1 MiB regions, 10%
	// anywhere.
	nw := w.Write / stormBlock
	journal := r.Int64N(max(1, blocks-2048))
	var hot []int64
	for range max(4, nw/512) {
		hot = append(hot, r.Int64N(max(1, blocks-256)))
	}
	cursor := int64(0)
	for range nw {
		b := r.Int64N(blocks)
		if w.Locality {
			switch p := r.Float64(); {
			case p < 0.6:
				b = journal + cursor%2048
				cursor++
			case p < 0.9:
				b = hot[r.IntN(len(hot))] + r.Int64N(256)
			}
		}
		b = min(b, blocks-1)
		ops = append(ops, wop{off: b * stormBlock, n: stormBlock, write: true, key: r.Float64()})
	}
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].key < ops[j].key })
	return ops
}

// writeSource gives the bytes of the workload's writes, in order: the
// same for the workstation and for the expected image.
func (w stormWork) writeSource() *rand.ChaCha8 {
	var key [32]byte
	copy(key[:], fmt.Sprintf("storm writes %d", w.Seed))
	return rand.NewChaCha8(key)
}

// expectedDigest is the SHA-256 of the template with the workload's
// writes applied (in order; a later write to a block replaces an earlier
// one): what every workstation's disk must hold at the end.
func (w stormWork) expectedDigest(template string) (string, error) {
	src := w.writeSource()
	over := map[int64][]byte{}
	for _, op := range w.ops() {
		if op.write {
			b := make([]byte, op.n)
			src.Read(b)
			over[op.off/stormBlock] = b
		}
	}
	f, err := os.Open(template)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < w.Size; off += int64(len(buf)) {
		n := min(int64(len(buf)), w.Size-off)
		if _, err := io.ReadFull(f, buf[:n]); err != nil {
			return "", err
		}
		for b := off / stormBlock; b < (off+n)/stormBlock; b++ {
			if d, ok := over[b]; ok {
				copy(buf[b*stormBlock-off:], d)
			}
		}
		h.Write(buf[:n])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileDigest is the SHA-256 of a file.
func fileDigest(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// disk is what the workload runs against: a local file, a file on a FUSE
// mount, or a file on an SMB share.
type disk interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
}

// workResult is what a workstation's workload process reports.
type workResult struct {
	Start   int64   `json:"start"`   // unix ns the workload began (after any download)
	Done    int64   `json:"done"`    // unix ns the workload (and its fsync) ended: the VM is usable
	Durable int64   `json:"durable"` // unix ns its changes were on the server (cache-and-update: the upload)
	Down    float64 `json:"down_s"`  // cache-and-update: the download
	Up      float64 `json:"up_s"`    // cache-and-update: the upload
	Read    []int64 `json:"read_ns"` // latency of every read request
	Write   []int64 `json:"write_ns"`
	Sync    int64   `json:"sync_ns"`
}

// run applies the workload to d, timing every request.
func (w stormWork) run(d disk, res *workResult) error {
	src := w.writeSource()
	buf := make([]byte, 1<<20)
	for _, op := range w.ops() {
		t := time.Now()
		if op.write {
			src.Read(buf[:op.n])
			if _, err := d.WriteAt(buf[:op.n], op.off); err != nil {
				return fmt.Errorf("write %d at %d: %w", op.n, op.off, err)
			}
			res.Write = append(res.Write, int64(time.Since(t)))
			continue
		}
		if n, err := d.ReadAt(buf[:op.n], op.off); err != nil && !(errors.Is(err, io.EOF) && n == op.n) {
			return fmt.Errorf("read %d at %d: %w", op.n, op.off, err)
		}
		res.Read = append(res.Read, int64(time.Since(t)))
	}
	t := time.Now()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	res.Sync = int64(time.Since(t))
	return nil
}

// stormWorker is the hidden subcommand `bench storm-work`: one
// workstation's workload, run as its own process in the workstation's
// network namespace. It waits until -start-at, runs, and writes a
// workResult as JSON on stdout.
func stormWorker(args []string) error {
	fl := flag.NewFlagSet("storm-work", flag.ExitOnError)
	mode := fl.String("mode", "file", "file (a local or mounted file), smb (the file on an SMB share), copy (download from SMB, run locally, upload)")
	path := fl.String("path", "", "file: the disk; copy: the local copy")
	addr := fl.String("smb-addr", "", "SMB server host:port")
	share := fl.String("smb-share", "", "share name")
	name := fl.String("smb-name", "", "file name on the share")
	user := fl.String("smb-user", "root", "SMB user")
	pass := fl.String("smb-pass", "", "SMB password")
	startAt := fl.Int64("start-at", 0, "unix ns to start at")
	var w stormWork
	fl.Uint64Var(&w.Seed, "seed", 1, "workload seed")
	fl.Int64Var(&w.Size, "size", 0, "disk size")
	fl.Int64Var(&w.Read, "read", 0, "bytes to read")
	fl.Int64Var(&w.Write, "write", 0, "bytes to write")
	fl.BoolVar(&w.Locality, "locality", false, "clustered writes")
	fl.Parse(args)
	ctx := context.Background()
	var share2 *smb2.Share
	if *mode != "file" {
		// The session is set up before the start: a VM's host has its
		// share connected before the user starts the VM.
		conn, err := net.Dial("tcp", *addr)
		if err != nil {
			return err
		}
		d := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: *user, Password: *pass}}
		s, err := d.DialConn(ctx, conn, *addr)
		if err != nil {
			return fmt.Errorf("smb session: %w", err)
		}
		defer s.Logoff()
		if share2, err = s.Mount(*share); err != nil {
			return fmt.Errorf("smb mount %s: %w", *share, err)
		}
		defer share2.Umount()
	}
	time.Sleep(time.Until(time.Unix(0, *startAt)))
	var res workResult
	res.Start = time.Now().UnixNano()
	var d disk
	var err error
	switch *mode {
	case "file":
		d, err = os.OpenFile(*path, os.O_RDWR, 0)
	case "smb":
		d, err = share2.OpenFile(*name, os.O_RDWR, 0)
	case "copy":
		t := time.Now()
		if err = smbCopy(share2, *name, *path, false); err != nil {
			return err
		}
		res.Down = time.Since(t).Seconds()
		d, err = os.OpenFile(*path, os.O_RDWR, 0)
	default:
		return fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		return err
	}
	if err := w.run(d, &res); err != nil {
		d.Close()
		return err
	}
	if err := d.Close(); err != nil {
		return err
	}
	res.Done = time.Now().UnixNano()
	res.Durable = res.Done
	if *mode == "copy" {
		t := time.Now()
		if err := smbCopy(share2, *name, *path, true); err != nil {
			return err
		}
		res.Up = time.Since(t).Seconds()
		res.Durable = time.Now().UnixNano()
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// smbCopy copies a file from the share to a local path (up: back), the
// whole file, and makes the copy durable.
func smbCopy(s *smb2.Share, name, local string, up bool) error {
	if up {
		lf, err := os.Open(local)
		if err != nil {
			return err
		}
		defer lf.Close()
		rf, err := s.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := io.CopyBuffer(struct{ io.Writer }{rf}, struct{ io.Reader }{lf}, make([]byte, 1<<20)); err != nil {
			rf.Close()
			return fmt.Errorf("upload: %w", err)
		}
		if err := rf.Sync(); err != nil {
			rf.Close()
			return err
		}
		return rf.Close()
	}
	rf, err := s.Open(name)
	if err != nil {
		return err
	}
	defer rf.Close()
	lf, err := os.Create(local)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(struct{ io.Writer }{lf}, struct{ io.Reader }{rf}, make([]byte, 1<<20)); err != nil {
		lf.Close()
		return fmt.Errorf("download: %w", err)
	}
	if err := lf.Sync(); err != nil {
		lf.Close()
		return err
	}
	return lf.Close()
}
