package multicast

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// SessionsConfig configures the server's multicast sessions.
type SessionsConfig struct {
	// Conn is the sender's socket (DialGroup).
	Conn PacketConn
	// Group is the multicast group and port sessions go to.
	Group *net.UDPAddr
	// Source gives block frames (sync/repo.Repo).
	Source FrameSource
	// Manifest returns a verified template version (0: latest).
	Manifest func(ctx context.Context, name string, version uint64) (*manifest.Manifest, error)
	// MaxRate caps the sending rate (bytes/s); 0 means DefaultMaxRate.
	MaxRate int64
	// PacketSize is the largest UDP payload; 0 means DefaultPacketSize.
	PacketSize int
	// Encrypt gives every session a fresh AES-256-GCM key.
	Encrypt bool
	// JoinWindow is how long a session is announced before data goes
	// out; 0 means a window long enough for workstations polling every
	// PollInterval to join.
	JoinWindow time.Duration
	// MinReceivers ends a session's join window as soon as this many
	// workstations have joined (SenderConfig.MinReceivers): a lab of a
	// known size starts when its last workstation is in. 0: always the
	// whole window.
	MinReceivers int
	// Logger receives the sessions' log.
	Logger *slog.Logger
}

// PollInterval is how often workstations ask for sessions; a session's
// join window covers it, and so does its linger: a workstation that saw
// the session listed as sending just before its receivers were done
// still joins it (rather than waiting out its join timeout).
const PollInterval = 2 * time.Second

// Sessions runs multicast sessions one at a time, in the order pushed, and
// remembers the recent ones for workstations to find.
type Sessions struct {
	cfg  SessionsConfig
	log  *slog.Logger
	mu   sync.Mutex
	list []api.MulticastSession
	keys map[uint32][]byte
	kick chan struct{}
	// For Stats: the sessions ended by state, the sum of their
	// counters, and the sender of the session sending now.
	ended map[string]int
	sent  SenderStats
	cur   *Sender
}

// NewSessions returns a session runner; Run sends.
func NewSessions(cfg SessionsConfig) *Sessions {
	if cfg.JoinWindow == 0 {
		cfg.JoinWindow = PollInterval + time.Second
	}
	s := &Sessions{cfg: cfg, log: cfg.Logger, keys: make(map[uint32][]byte), kick: make(chan struct{}, 1),
		ended: make(map[string]int)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Push queues a session for name@version (0: latest).
func (s *Sessions) Push(ctx context.Context, name string, version uint64) (api.MulticastSession, error) {
	m, err := s.cfg.Manifest(ctx, name, version)
	if err != nil {
		return api.MulticastSession{}, err
	}
	var id [4]byte
	rand.Read(id[:])
	sess := api.MulticastSession{
		ID:       uint32(id[0])<<24 | uint32(id[1])<<16 | uint32(id[2])<<8 | uint32(id[3]) | 1,
		Template: m.Name, Version: m.Version, Group: s.cfg.Group.String(),
		State: "queued", Queued: time.Now().UTC(),
	}
	if s.cfg.Encrypt {
		sess.Key = make([]byte, 32)
		rand.Read(sess.Key)
	}
	s.mu.Lock()
	s.list = append(s.list, sess)
	if len(s.list) > 64 {
		s.list = s.list[len(s.list)-64:]
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	s.log.Info("multicast session queued", "session", sess.ID, "template", m.Name, "version", m.Version)
	return sess, nil
}

// List returns the recent sessions, oldest first.
func (s *Sessions) List() []api.MulticastSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list)
}

func (s *Sessions) update(id uint32, fn func(*api.MulticastSession)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.list {
		if s.list[i].ID == id {
			fn(&s.list[i])
		}
	}
}

// Run sends queued sessions until ctx ends.
func (s *Sessions) Run(ctx context.Context) {
	for {
		next, ok := s.nextQueued()
		if !ok {
			select {
			case <-s.kick:
				continue
			case <-ctx.Done():
				return
			}
		}
		s.send(ctx, next)
		if ctx.Err() != nil {
			return
		}
	}
}

func (s *Sessions) nextQueued() (api.MulticastSession, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.list {
		if sess.State == "queued" {
			return sess, true
		}
	}
	return api.MulticastSession{}, false
}

func (s *Sessions) send(ctx context.Context, sess api.MulticastSession) {
	fail := func(err error) {
		s.log.Error("multicast session failed", "session", sess.ID, "err", err)
		s.update(sess.ID, func(x *api.MulticastSession) { x.State, x.Error, x.Finished = "failed", err.Error(), time.Now().UTC() })
		s.mu.Lock()
		s.ended["failed"]++
		s.mu.Unlock()
	}
	m, err := s.cfg.Manifest(ctx, sess.Template, sess.Version)
	if err != nil {
		fail(err)
		return
	}
	snd, err := NewSender(SenderConfig{
		Conn: s.cfg.Conn, Group: s.cfg.Group, Source: s.cfg.Source, Manifest: m, Session: sess.ID,
		PacketSize: s.cfg.PacketSize, MaxRate: s.cfg.MaxRate, Key: sess.Key, JoinWindow: s.cfg.JoinWindow, MinReceivers: s.cfg.MinReceivers,
		Linger: PollInterval,
		Logger: s.log,
	})
	if err != nil {
		fail(err)
		return
	}
	s.update(sess.ID, func(x *api.MulticastSession) { x.State, x.Started = "sending", time.Now().UTC() })
	s.mu.Lock()
	s.cur = snd
	s.mu.Unlock()
	st, err := snd.Run(ctx)
	s.mu.Lock()
	s.cur = nil
	s.sent.add(snd.Stats())
	s.mu.Unlock()
	if err != nil {
		fail(fmt.Errorf("send: %w", err))
		return
	}
	s.update(sess.ID, func(x *api.MulticastSession) {
		x.State, x.Finished, x.Sent, x.Needed = "done", time.Now().UTC(), st.Bytes, st.NeededBytes
	})
	s.mu.Lock()
	s.ended["done"]++
	s.mu.Unlock()
	s.log.Info("multicast session done", "session", sess.ID, "template", sess.Template, "version", sess.Version,
		"stats", fmt.Sprintf("%+v", st))
}
