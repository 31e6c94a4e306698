//go:build linux

package multicast

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
)

const bs = blockstore.DefaultBlockSize

// template is a test template: its blocks in a memstore (the server's
// store) and its signed-and-opened manifest.
type template struct {
	store  *memstore.Store
	m      *manifest.Manifest
	signed []byte
	pub    ed25519.PublicKey
	key    ed25519.PrivateKey
	plain  [][]byte // plain bytes of the file's blocks, by block index
}

// newTemplate makes a template of one file of n blocks: random blocks,
// with one in 16 compressible and one in 64 a hole.
func newTemplate(t testing.TB, n int, seed uint64) *template {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.NewChaCha8([32]byte{byte(seed)}))
	tp := &template{store: memstore.New(), pub: pub, key: key}
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1})
	for i := range n {
		tp.plain = append(tp.plain, makeBlock(rng, i))
	}
	tp.commit(t, 1)
	return tp
}

func makeBlock(rng *rand.ChaCha8, i int) []byte {
	b := make([]byte, bs)
	switch {
	case i%64 == 63:
		// a hole
	case i%16 == 5:
		for j := range b {
			b[j] = byte(j / 100)
		}
		_, _ = rng.Read(b[:64])
	default:
		_, _ = rng.Read(b)
	}
	return b
}

// commit stores the blocks and makes version v's manifest.
func (tp *template) commit(t testing.TB, v uint64) {
	t.Helper()
	f := manifest.File{Path: "disk.img", Mode: 0o644, Size: int64(len(tp.plain)) * bs}
	f.Blocks = make([]blockstore.ID, len(tp.plain))
	// Hash and encode on every core: a 1 GiB template is 16384 blocks.
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var blocks []blockstore.Block
			for i := w; i < len(tp.plain); i += workers {
				p := tp.plain[i]
				if blockstore.IsZero(p) {
					continue
				}
				id := blockstore.Sum(p)
				f.Blocks[i] = id
				if _, err := tp.store.Missing(context.Background(), []blockstore.ID{id}); err == nil {
					blocks = append(blocks, blockstore.Block{ID: id, Frame: blockstore.Encode(nil, p)})
				}
				if len(blocks) == 256 {
					errs[w] = tp.store.Put(context.Background(), blocks...)
					blocks = blocks[:0]
				}
			}
			if err := tp.store.Put(context.Background(), blocks...); err != nil {
				errs[w] = err
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	m := &manifest.Manifest{Kind: manifest.KindTemplate, Name: "winxp", Version: v, BlockSize: bs,
		Created: time.Unix(1700000000, 0).UTC(), Files: []manifest.File{f}}
	if v > 1 {
		m.Parent = v - 1
	}
	body, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tp.signed = manifest.Sign(body, tp.key)
	tp.m, _, err = manifest.Open(tp.signed, tp.pub)
	if err != nil {
		t.Fatal(err)
	}
}

// frames adapts the template's store to FrameSource and Fetcher.
type frames struct{ s *memstore.Store }

func (f frames) Frame(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	return f.s.GetFrame(ctx, id, dst)
}

func (f frames) FetchFrames(ctx context.Context, ids []blockstore.ID, fn func(id blockstore.ID, frame, plain []byte) error) error {
	for _, id := range ids {
		fr, err := f.s.GetFrame(ctx, id, nil)
		if err != nil {
			return err
		}
		plain, err := blockstore.Open(id, fr, nil)
		if err != nil {
			return err
		}
		if err := fn(id, fr, plain); err != nil {
			return err
		}
	}
	return nil
}

// checkExact reads the file back out of a receiver's store and compares
// every byte with the template.
func checkExact(t testing.TB, name string, tp *template, s blockstore.Getter) {
	t.Helper()
	f, _ := tp.m.Lookup("disk.img")
	var buf []byte
	for i, id := range f.Blocks {
		if id.IsHole() {
			if !blockstore.IsZero(tp.plain[i]) {
				t.Fatalf("%s: block %d is a hole in the manifest", name, i)
			}
			continue
		}
		var err error
		buf, err = s.Get(context.Background(), id, buf[:0])
		if err != nil {
			t.Fatalf("%s: block %d: %v", name, i, err)
		}
		if !bytes.Equal(buf, tp.plain[i]) {
			t.Fatalf("%s: block %d differs", name, i)
		}
	}
}

// rxSpec describes one receiver of a session.
type rxSpec struct {
	loss  float64     // injected loss on its socket
	store *cacheStore // nil: a new empty store
	wrap  func(PacketConn) PacketConn
	late  time.Duration // join this long after the sender starts
	// stay makes the receiver never leave for loss (LeaveLoss -1): for
	// tests of repair, where the injected loss plus what a loaded
	// machine drops may pass the leaving threshold.
	stay bool
	// after, if set, holds the receiver back until receiver 1 has stored
	// this fraction of what it needs (1: until receiver 1 is done):
	// late by the session's progress, not by the clock, so a loaded
	// machine does not change what the test tests.
	after float64
	// slowStore, if set, wraps the receiver's store (checked byte-exact
	// as always): a fault injected on top of the real store.
	slowStore func(*cacheStore) BlockStore
	// node is the namespace the receiver runs in; 0: its own, i+1.
	// Receivers given one node share a host, as two mounts on one
	// workstation do.
	node int
}

type sessionResult struct {
	sender SenderStats
	rx     []ReceiverStats
	stores []*cacheStore
	wall   time.Duration
}

var group = &net.UDPAddr{IP: net.IPv4(239, 77, 0, 1), Port: 47001}

// runSession sends tp to receivers in namespaces 1..len(specs) of tn.
// extra, if set, runs beside the sender (in the sender's namespace thread
// of its choosing) until the session ends.
func runSession(t testing.TB, tn *testNet, tp *template, scfg SenderConfig, specs []rxSpec, extra ...func(ctx context.Context)) sessionResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res := sessionResult{rx: make([]ReceiverStats, len(specs)), stores: make([]*cacheStore, len(specs))}
	errs := make([]error, len(specs)+1)
	var sconn PacketConn
	if err := tn.in(0, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err := DialGroup(&net.UDPAddr{IP: tn.addr(0)}, ifi, 1)
		sconn = c
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sconn.Close()
	// A receiver's socket joins the group when the receiver starts, as a
	// workstation's does: a late one must not find the session's first
	// packets queued on it.
	conns := make([]PacketConn, len(specs))
	var closers []func() error
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	var connMu sync.Mutex
	listen := func(i int) error {
		var c PacketConn
		node := i + 1
		if specs[i].node != 0 {
			node = specs[i].node
		}
		if err := tn.in(node, func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			pc, err := ListenGroup(group, ifi)
			if err == nil {
				c = pc
			}
			return err
		}); err != nil {
			return err
		}
		connMu.Lock()
		closers = append(closers, c.Close)
		connMu.Unlock()
		if sp := specs[i]; sp.loss > 0 {
			c = NewLossyConn(c, sp.loss, uint64(i+1))
		}
		if sp := specs[i]; sp.wrap != nil {
			c = sp.wrap(c)
		}
		conns[i] = c
		return nil
	}
	for i, sp := range specs {
		if sp.late == 0 && sp.after == 0 {
			if err := listen(i); err != nil {
				t.Fatal(err)
			}
		}
		res.stores[i] = sp.store
		if res.stores[i] == nil {
			res.stores[i] = newCacheStore()
		}
	}
	scfg.Conn, scfg.Group, scfg.Source, scfg.Manifest = sconn, group, frames{tp.store}, tp.m
	if senderSource != nil {
		scfg.Source = senderSource
	}
	if sendWrap != nil {
		scfg.Conn = sendWrap(sconn)
	}
	if raceEnabled && scfg.MaxRate == 0 {
		scfg.MaxRate = 30 << 20
	}
	if scfg.JoinWindow == 0 && scfg.MinReceivers == 0 {
		// The session starts when the receivers that start with it have
		// joined, not after a time they may miss on a loaded machine:
		// with a 300 ms window, a session whose receivers had not yet
		// sent their needs found nothing to send and ended, and all of
		// them fetched everything by unicast.
		for _, sp := range specs {
			if sp.late == 0 && sp.after == 0 {
				scfg.MinReceivers++
			}
		}
		scfg.JoinWindow = 30 * time.Second
	}
	if scfg.Logger == nil {
		scfg.Logger = debugLog("sender")
	}
	snd, err := NewSender(scfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var (
		wg    sync.WaitGroup
		first atomic.Pointer[Receiver] // receiver 1, once made
		done1 = make(chan struct{})    // closed when receiver 1 is done
	)
	for i, sp := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(sp.late)
			if sp.after > 0 {
				waitProgress(ctx, &first, done1, sp.after)
			}
			if conns[i] == nil {
				if errs[i+1] = listen(i); errs[i+1] != nil {
					return
				}
			}
			var store BlockStore = res.stores[i]
			if rxStore != nil {
				store = rxStore(i)
			}
			if sp.slowStore != nil {
				store = sp.slowStore(res.stores[i])
			}
			rcfg := ReceiverConfig{Conn: conns[i], Manifest: tp.m, Store: store,
				Unicast: frames{tp.store}, ID: uint32(i + 1), Session: snd.Session(), Key: scfg.Key, JoinTimeout: 30 * time.Second}
			if sp.stay {
				rcfg.LeaveLoss = -1
			}
			rcfg.Logger = debugLog(fmt.Sprintf("receiver %d", i+1))
			r, err := NewReceiver(rcfg)
			if err != nil {
				errs[i+1] = err
				if i == 0 {
					close(done1)
				}
				return
			}
			if i == 0 {
				first.Store(r)
				defer close(done1)
			}
			res.rx[i], errs[i+1] = r.Run(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		res.sender, errs[0] = snd.Run(ctx)
	}()
	xctx, xcancel := context.WithCancel(ctx)
	var xwg sync.WaitGroup
	for _, fn := range extra {
		xwg.Add(1)
		go func() { defer xwg.Done(); fn(xctx) }()
	}
	wg.Wait()
	xcancel()
	xwg.Wait()
	res.wall = time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if !skipCheck {
		for i := range specs {
			checkExact(t, fmt.Sprintf("receiver %d", i+1), tp, res.stores[i])
		}
	}
	return res
}

// debugLog is a session's log on stderr when DVFS_TEST_LOG is set (the
// way to see why a session went as it did), else nil (discarded).
func debugLog(who string) *slog.Logger {
	if os.Getenv("DVFS_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", who)
}

// waitProgress waits until the receiver in first has stored frac of the
// blocks it needs, or done is closed, or ctx ends.
func waitProgress(ctx context.Context, first *atomic.Pointer[Receiver], done <-chan struct{}, frac float64) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if r := first.Load(); r != nil && frac < 1 {
			if stored, needed := r.Progress(); needed > 0 && float64(stored) >= frac*float64(needed) {
				return
			}
		}
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// skipCheck and rxStore are set by runBench only.
var (
	skipCheck bool
	rxStore   func(i int) BlockStore
	// sendWrap, set by TestNoSegmentationOffload only, wraps the
	// sender's socket.
	sendWrap func(PacketConn) PacketConn
	// senderSource, set by TestSlowSource only, is the sender's source.
	senderSource FrameSource
)

// runBench runs a session to n receivers whose caches discard what they
// get (verified first, as always), with the default rate.
func runBench(t testing.TB, tn *testNet, tp *template, n int) sessionResult {
	skipCheck = true
	stores := make([]*discardStore, n)
	rxStore = func(i int) BlockStore { stores[i] = &discardStore{}; return stores[i] }
	defer func() { skipCheck, rxStore = false, nil }()
	res := runSession(t, tn, tp, SenderConfig{JoinWindow: 500 * time.Millisecond}, make([]rxSpec, n))
	for i, s := range stores {
		if int(s.n.Load()) != res.rx[i].Needed {
			t.Fatalf("receiver %d stored %d of %d blocks", i+1, s.n.Load(), res.rx[i].Needed)
		}
	}
	return res
}

// cacheStore is a receiver's cache for the tests: memstore's contract
// (Put copies, Get verifies) plus seed, which shares frames with the
// server's store without copying them, so four caches that already hold
// a 1 GiB version cost no memory or time.
type cacheStore struct {
	mu     sync.Mutex
	frames map[blockstore.ID][]byte
}

func newCacheStore() *cacheStore { return &cacheStore{frames: make(map[blockstore.ID][]byte)} }

func (c *cacheStore) seed(id blockstore.ID, frame []byte) {
	c.mu.Lock()
	c.frames[id] = frame
	c.mu.Unlock()
}

func (c *cacheStore) Put(ctx context.Context, blocks ...blockstore.Block) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range blocks {
		if err := blockstore.Verify(b.ID, b.Frame); err != nil {
			return err // the receiver must never hand over such a block
		}
		c.frames[b.ID] = bytes.Clone(b.Frame)
	}
	return nil
}

func (c *cacheStore) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []blockstore.ID
	for _, id := range ids {
		if _, ok := c.frames[id]; !ok && !id.IsHole() {
			out = append(out, id)
		}
	}
	return out, nil
}

func (c *cacheStore) Get(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	c.mu.Lock()
	fr, ok := c.frames[id]
	c.mu.Unlock()
	if !ok {
		return dst, blockstore.ErrNotFound
	}
	return blockstore.Open(id, fr, dst)
}
