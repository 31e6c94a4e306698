package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/repo"
)

// Directory is a user directory (sync/ldapauth): users log in with its
// password, and the server asks it again whether a directory token's user
// still may. role is api.RoleAdmin or api.RoleUser; groups are group
// names. An error whose Refused method returns true is the directory's
// refusal of the user (a wrong password, no such user, a disabled one);
// any other is a failure to ask it.
type Directory interface {
	Login(ctx context.Context, user, password string) (role string, groups []string, err error)
	Lookup(ctx context.Context, user string) (role string, groups []string, err error)
}

// Defaults of the directory's settings in Config.
const (
	DefaultDirectoryRecheck = time.Minute
	DefaultDirectoryGrace   = 5 * time.Minute
	DefaultLoginLifetime    = 30 * 24 * time.Hour
)

// Failed logins: each user name and each client address may fail
// loginBurst times, then once every loginEvery; a failure is answered
// after loginFailDelay.
const (
	loginBurst     = 5
	loginEvery     = 30 * time.Second
	loginFailDelay = time.Second
	loginsAtOnce   = 16
	loginKeysMax   = 10000
)

// refusedByDirectory reports whether err is the directory refusing a user.
func refusedByDirectory(err error) bool {
	var r interface{ Refused() bool }
	return errors.As(err, &r) && r.Refused()
}

// directoryState remembers the directory's last answer about each user,
// so that it is asked at most once per Config.DirectoryRecheck per user.
type directoryState struct {
	mu      sync.Mutex
	answers map[string]dirAnswer
	flight  singleflight.Group
	// failures bounds failed logins by user name and client address.
	failures map[string]*rate.Limiter
	// logins bounds the logins the directory is asked at once.
	logins chan struct{}
}

type dirAnswer struct {
	// at is when the directory was last asked; answered, when it last
	// answered (the grace runs from there).
	at, answered time.Time
	role         string
	groups       []string
	refusal      error // the directory refused the user
}

func newDirectoryState() *directoryState {
	return &directoryState{answers: make(map[string]dirAnswer), failures: make(map[string]*rate.Limiter),
		logins: make(chan struct{}, loginsAtOnce)}
}

// directoryPrincipal checks the user of a directory token with the
// directory (at most once per recheck period) and returns p with the role
// and groups the directory gives them now. A refusal wraps errTokenRefused
// (401); a directory that cannot be asked, errDirectory (503).
func (s *Server) directoryPrincipal(ctx context.Context, p repo.Principal) (repo.Principal, error) {
	if s.cfg.Directory == nil {
		return p, fmt.Errorf("%w: token %s of %s came from a directory login, and this server has no directory", errTokenRefused, p.TokenID, p.Name)
	}
	now := time.Now()
	st := s.dir
	st.mu.Lock()
	a, ok := st.answers[p.Name]
	st.mu.Unlock()
	if !ok || now.Sub(a.at) >= s.cfg.DirectoryRecheck {
		v, err, _ := st.flight.Do(p.Name, func() (any, error) {
			// Not the request's context: one caller going away must not
			// fail the others waiting on the same answer.
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			role, groups, err := s.cfg.Directory.Lookup(lctx, p.Name)
			fresh := dirAnswer{at: time.Now(), answered: time.Now(), role: role, groups: groups}
			switch {
			case refusedByDirectory(err):
				fresh.role, fresh.groups, fresh.refusal = "", nil, err
			case err != nil:
				if ok && now.Sub(a.answered) < s.cfg.DirectoryRecheck+s.cfg.DirectoryGrace {
					s.log.Warn("directory unreachable: the last answer stands", "user", p.Name, "answered", a.answered, "err", err)
					// Asked again a recheck period from now, not at
					// every request: a directory that does not answer
					// costs each of them its timeout.
					stale := a
					stale.at = time.Now()
					st.remember(p.Name, stale)
					return stale, nil
				}
				return dirAnswer{}, err
			}
			st.remember(p.Name, fresh)
			return fresh, nil
		})
		if err != nil {
			return p, fmt.Errorf("%w: checking %s: %v", errDirectory, p.Name, err)
		}
		a = v.(dirAnswer)
	}
	if a.refusal != nil {
		return p, fmt.Errorf("%w: the directory refuses %s (token %s): %v", errTokenRefused, p.Name, p.TokenID, a.refusal)
	}
	p.Role, p.Groups = a.role, a.groups
	return p, nil
}

var (
	// errDirectory: the directory could not be asked (503).
	errDirectory = errors.New("directory unreachable")
	// errTokenRefused: a known token whose user may no longer (401).
	errTokenRefused = errors.New("token refused")
)

func (st *directoryState) remember(user string, a dirAnswer) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.answers) >= loginKeysMax {
		clear(st.answers) // asked again, at most once each
	}
	st.answers[user] = a
}

// limiter returns the failure limiter of key, nil when it has none.
func (st *directoryState) limiter(key string, create bool) *rate.Limiter {
	st.mu.Lock()
	defer st.mu.Unlock()
	l := st.failures[key]
	if l == nil && create {
		if len(st.failures) >= loginKeysMax {
			for k, v := range st.failures {
				if v.Tokens() >= loginBurst {
					delete(st.failures, k)
				}
			}
		}
		l = rate.NewLimiter(rate.Every(loginEvery), loginBurst)
		st.failures[key] = l
	}
	return l
}

// login trades a directory user's password for a token of theirs.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Directory == nil {
		s.fail(w, r, http.StatusNotImplemented, errors.New("this server has no directory to log in with: ask an admin for a token (dvfs token create)"))
		return
	}
	body, err := readBody(w, r, api.MaxLoginBytes)
	if err != nil {
		s.fail(w, r, statusOf(err), err)
		return
	}
	var req api.LoginRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("%w: login request: %v", errBadRequest, err))
		return
	}
	if err := req.Valid(); err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("login: %w", err))
		return
	}
	// From here on the log names who tried.
	r = withPrincipal(r, repo.Principal{Name: req.User})
	keys := []string{"user " + req.User, "client " + clientHost(r)}
	for _, k := range keys {
		if l := s.dir.limiter(k, false); l != nil && l.Tokens() < 1 {
			s.fail(w, r, http.StatusTooManyRequests, fmt.Errorf("too many failed logins for %s (%s): try again in a minute", req.User, k))
			return
		}
	}
	select {
	case s.dir.logins <- struct{}{}:
		defer func() { <-s.dir.logins }()
	case <-r.Context().Done():
		return
	}
	role, groups, err := s.cfg.Directory.Login(r.Context(), req.User, req.Password)
	if refusedByDirectory(err) {
		for _, k := range keys {
			s.dir.limiter(k, true).Allow()
		}
		s.log.Warn("login refused", "user", req.User, "client", r.RemoteAddr, "reason", err)
		// A guesser waits as long for every answer.
		select {
		case <-time.After(loginFailDelay):
		case <-r.Context().Done():
		}
		s.fail(w, r, http.StatusUnauthorized, fmt.Errorf("login refused for %s: wrong user name or password, or the account is disabled", req.User))
		return
	}
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %v", errDirectory, err))
		return
	}
	token, info, err := s.repo.IssueToken(r.Context(), repo.TokenSpec{Name: req.User, Role: role,
		Lifetime: s.cfg.LoginLifetime, Source: api.SourceDirectory})
	if err != nil {
		s.fail(w, r, statusOf(err), err)
		return
	}
	s.dir.remember(req.User, dirAnswer{at: time.Now(), answered: time.Now(), role: role, groups: groups})
	s.log.Info("logged in", "user", req.User, "role", role, "token_id", info.TokenID, "expires", info.Expires, "client", r.RemoteAddr)
	_ = writeJSON(w, http.StatusCreated, tokenResponse(token, info))
}
