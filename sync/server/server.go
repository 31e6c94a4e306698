// Package server puts a template repository (sync/repo) on HTTP: routing,
// token authentication, request bounds, and the mapping of errors to status
// codes. Handlers decode, call the repository, and encode; nothing else.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/repo"
)

// Config configures a Server.
type Config struct {
	// Repo is the repository served.
	Repo *repo.Repo
	// Logger receives request errors.
	Logger *slog.Logger
	// Multicast, if set, runs multicast sessions (sync/multicast.Sessions).
	Multicast Multicast
	// PushOnPublish starts a multicast session for every new version:
	// those published through this server and, while WatchCatalog runs,
	// those published through the repository's other servers.
	PushOnPublish bool
	// Limits bounds connections, time and body memory; zero fields take
	// DefaultLimits.
	Limits Limits
	// Groups are the server's own groups: group name -> member names. A
	// principal is a member of these and of the groups its token or
	// directory gives it (api.Principal.Groups). See ValidGroups.
	Groups map[string][]string
	// Directory, if set, lets users log in with their directory password
	// (api.PathLogin), and is asked again, at most every
	// DirectoryRecheck, whether a directory token's user still may, and
	// with what role and groups. When it cannot be asked, its last answer
	// stands for DirectoryGrace more; then such requests get 503.
	Directory        Directory
	DirectoryRecheck time.Duration // default DefaultDirectoryRecheck
	DirectoryGrace   time.Duration // default DefaultDirectoryGrace
	// LoginLifetime is how long a login's token is good for (default
	// DefaultLoginLifetime).
	LoginLifetime time.Duration
}

// Multicast is what the server needs of the multicast session runner.
type Multicast interface {
	Push(ctx context.Context, name string, version uint64) (api.MulticastSession, error)
	List() []api.MulticastSession
}

// Server is the repository's HTTP handler.
type Server struct {
	repo    *repo.Repo
	log     *slog.Logger
	mux     *http.ServeMux
	cfg     Config
	limits  Limits
	bodyMax map[string]int64 // by route pattern; others: defaultBodyMax
	bodies  bodies
	// requests counts the requests answered, by route and status.
	requests requestStats
	// memberOf lists the groups of Config.Groups each member is in.
	memberOf map[string][]string
	// dir is what the server remembers of Config.Directory's answers.
	dir *directoryState
	// pushes are the versions a session was started for on publish.
	pushes pushes
	// bg orders background fetches after readers' (background.go).
	bg *background
}

// New returns the handler for cfg.Repo.
func New(cfg Config) *Server {
	lim := cfg.Limits.withDefaults()
	s := &Server{repo: cfg.Repo, log: cfg.Logger, mux: http.NewServeMux(), cfg: cfg, limits: lim,
		bodyMax: make(map[string]int64), bodies: newBodies(lim.BodyMemory), memberOf: memberships(cfg.Groups),
		bg: newBackground(lim)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.dir = newDirectoryState()
	if s.cfg.DirectoryRecheck <= 0 {
		s.cfg.DirectoryRecheck = DefaultDirectoryRecheck
	}
	if s.cfg.DirectoryGrace <= 0 {
		s.cfg.DirectoryGrace = DefaultDirectoryGrace
	}
	if s.cfg.LoginLifetime <= 0 {
		s.cfg.LoginLifetime = DefaultLoginLifetime
	}
	// The largest body each route takes; a route not named here takes
	// defaultBodyMax.
	for pattern, max := range map[string]int64{
		"POST " + api.PathVersions:         api.MaxManifestBytes,
		"POST " + api.PathClone:            api.MaxManifestBytes,
		"POST " + api.PathCloneGenerations: api.MaxManifestBytes,
		"POST " + api.PathMissing:          api.MaxIDsPerRequest * blockstore.IDSize,
		"POST " + api.PathFetch:            api.MaxFetchIDs * blockstore.IDSize,
		"POST " + api.PathUpload:           api.MaxUploadBytes,
		"POST " + api.PathTokens:           api.MaxJSONBytes,
		"POST " + api.PathLogin:            api.MaxLoginBytes,
		"POST " + api.PathCloneLease:       api.MaxJSONBytes,
		"POST " + api.PathCloneSnapshots:   api.MaxJSONBytes,
		"POST " + api.PathCloneRevert:      api.MaxJSONBytes,
	} {
		s.bodyMax[pattern] = max
	}
	user, admin := api.RoleUser, api.RoleAdmin
	s.handle("GET "+api.PathPubKey, user, s.pubKey)
	s.handle("GET "+api.PathTemplates, user, s.listTemplates)
	s.handle("DELETE "+api.PathTemplate, admin, s.removeTemplate)
	s.handle("POST "+api.PathVersions, admin, s.commit)
	s.handle("GET "+api.PathVersion, user, s.version)
	s.handle("DELETE "+api.PathVersion, admin, s.removeTemplate)
	s.handle("GET "+api.PathManifest, user, s.signedManifest)
	s.handle("POST "+api.PathMissing, user, s.missing)
	s.handle("POST "+api.PathFetch, user, s.fetch)
	// Users upload the blocks of their clones' changes.
	s.handle("POST "+api.PathUpload, user, s.upload)
	s.handle("POST "+api.PathGC, admin, s.gc)
	s.handle("POST "+api.PathTokens, admin, s.createToken)
	s.handle("GET "+api.PathTokenList, user, s.listTokens)
	s.handle("DELETE "+api.PathToken, user, s.revokeToken)
	// Without a token: a login proves who it is by its password.
	s.mux.HandleFunc("POST "+api.PathLogin, s.login)
	s.handle("GET "+api.PathWhoAmI, user, s.whoAmI)
	s.handle("GET "+api.PathMulticast, user, s.multicastList)
	s.handle("POST "+api.PathMulticastPush, admin, s.multicastPush)
	s.handle("GET "+api.PathClones, user, s.listClones)
	s.handle("POST "+api.PathClone, user, s.createClone)
	s.handle("GET "+api.PathClone, user, s.clone)
	s.handle("DELETE "+api.PathClone, user, s.removeClone)
	s.handle("GET "+api.PathCloneSigned, user, s.cloneSigned)
	s.handle("POST "+api.PathCloneLease, user, s.acquireLease)
	s.handle("DELETE "+api.PathCloneLease, user, s.releaseLease)
	s.handle("POST "+api.PathCloneGenerations, user, s.commitGeneration)
	s.handle("GET "+api.PathCloneGeneration, user, s.generationSigned)
	s.handle("POST "+api.PathCloneSnapshots, user, s.snapshot)
	s.handle("POST "+api.PathCloneRevert, user, s.revert)
	s.handle("GET "+api.PathCloneHistory, user, s.history)
	s.handle("PUT "+api.PathCloneShare, user, s.share)
	s.handle("DELETE "+api.PathCloneShare, user, s.share)
	s.handle("GET "+api.PathQuota, user, s.quota)
	s.handle("PUT "+api.PathQuota, admin, s.setQuota)
	return s
}

// ServeHTTP implements http.Handler. Serve it with the http.Server and
// listener of Listen, which apply the rest of the Limits.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cw := &countingWriter{ResponseWriter: w}
	s.serveLimited(cw, r)
	if cw.code == 0 {
		cw.code = http.StatusOK // a handler that wrote nothing
	}
	_, pattern := s.mux.Handler(r)
	s.requests.add(pattern, cw.code, cw.bytes)
}
