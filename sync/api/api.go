// Package api defines what crosses the wire between a dvfs server and its
// clients: the HTTP routes, the JSON documents, and the binary encodings of
// ID lists and block batches. Both sync/server and sync/client use it, so the
// two cannot drift apart.
package api

import (
	"errors"
	"time"
)

// Routes, relative to the server's base URL. {name} is a template name and
// {version} a decimal version number or "latest".
const (
	PathPubKey    = "/v1/pubkey"                                     // GET: the server's ed25519 public key (raw 32 bytes)
	PathTemplates = "/v1/templates"                                  // GET: []TemplateInfo
	PathTemplate  = "/v1/templates/{name}"                           // DELETE: remove every version
	PathVersions  = "/v1/templates/{name}/versions"                  // POST: commit an unsigned manifest, returns VersionInfo
	PathVersion   = "/v1/templates/{name}/versions/{version}"        // GET: VersionInfo; DELETE: remove the version
	PathManifest  = "/v1/templates/{name}/versions/{version}/signed" // GET: the signed manifest
	PathMissing   = "/v1/blocks/missing"                             // POST IDs: the IDs the server lacks
	PathFetch     = "/v1/blocks/fetch"                               // POST IDs: a block batch
	PathUpload    = "/v1/blocks"                                     // POST a block batch: verified before 204, stored durably before a commit naming it
	PathGC        = "/v1/gc"                                         // POST: collect unreferenced blocks, returns GCResult
	PathTokens    = "/v1/tokens"                                     // POST TokenRequest: returns TokenResponse
	PathWhoAmI    = "/v1/whoami"                                     // GET: the caller's Principal
)

// Request bounds. A request beyond them gets 413 or 400.
const (
	// MaxIDsPerRequest bounds an ID list (2 MiB of IDs).
	MaxIDsPerRequest = 1 << 16
	// MaxFetchIDs bounds one fetch, so a response stays near 64 MiB.
	MaxFetchIDs = 1024
	// MaxUploadBytes bounds one upload body.
	MaxUploadBytes = 64 << 20
	// MaxManifestBytes bounds an uploaded manifest (a 1 TiB template of
	// 64 KiB blocks needs 512 MiB of IDs: far beyond any lab template).
	MaxManifestBytes = 256 << 20
	// MaxJSONBytes bounds small JSON requests.
	MaxJSONBytes = 1 << 20
)

// Roles a token can have.
const (
	RoleAdmin = "admin" // publishes and removes templates, makes tokens
	RoleUser  = "user"  // reads templates
)

// TemplateInfo lists one template and its versions, oldest first.
type TemplateInfo struct {
	Name     string        `json:"name"`
	Versions []VersionInfo `json:"versions"`
}

// VersionInfo describes one committed version.
type VersionInfo struct {
	Name       string    `json:"name"`
	Version    uint64    `json:"version"`
	Parent     uint64    `json:"parent,omitempty"`
	Created    time.Time `json:"created"`
	Files      int       `json:"files"`
	Bytes      int64     `json:"bytes"`       // logical size of all files
	Blocks     int       `json:"blocks"`      // distinct data blocks
	HoleBlocks int       `json:"hole_blocks"` // blocks of zeros, stored nowhere
	NewBlocks  int       `json:"new_blocks"`  // blocks no earlier version of this template had
	KeyID      string    `json:"key_id"`      // fingerprint of the signing key
}

// GCResult reports a garbage collection.
type GCResult struct {
	Kept    int   `json:"kept"`
	Deleted int   `json:"deleted"`
	Skipped int   `json:"skipped_recent"` // unreferenced but uploaded recently
	Freed   int64 `json:"freed_bytes"`    // frame bytes deleted
}

// TokenRequest asks for a new token.
type TokenRequest struct {
	Name string `json:"name"` // who it is for
	Role string `json:"role"` // RoleAdmin or RoleUser
	// ExpiresIn is the token's lifetime in seconds (0: it never
	// expires); at most MaxTokenLifetime.
	ExpiresIn int64 `json:"expires_in,omitempty"`
}

// TokenResponse carries a new token; the server keeps only its hash.
type TokenResponse struct {
	Token   string    `json:"token"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	ID      string    `json:"id,omitempty"`     // the token's ID (tokens.go)
	Expires time.Time `json:"expires,omitzero"` // zero: never
}

// Principal is who a token speaks for.
type Principal struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"` // when the token was made
	// The token's ID, expiry (zero: never) and source (tokens.go).
	TokenID string    `json:"token_id,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	Source  string    `json:"source,omitempty"`
	// Groups are the groups the principal belongs to (clones shared
	// with one of them are readable).
	Groups []string `json:"groups,omitempty"`
}

// Error is the JSON body of every 4xx and 5xx response.
type Error struct {
	Error string `json:"error"`
	// Missing lists blocks a commit referred to that the server lacks.
	Missing []string `json:"missing,omitempty"`
	// Lease is the lease that refused a request (409).
	Lease *Lease `json:"lease,omitempty"`
	// DeltaBaseMissing and DeltaMismatch list the delta blocks of an
	// upload that were refused (409, 422; see DeltaRefusedError).
	DeltaBaseMissing []string `json:"delta_base_missing,omitempty"`
	DeltaMismatch    []string `json:"delta_mismatch,omitempty"`
}

// ErrMalformed is wrapped by every decoding error of this package.
var ErrMalformed = errors.New("malformed message")

// Clone routes. A clone belongs to the principal that made it; {name} is
// the clone's name within its owner's clones.
const (
	PathClones      = "/v1/clones"               // GET: []CloneInfo of the caller
	PathClone       = "/v1/clones/{name}"        // POST unsigned manifest (?template=T&version=V): create; GET: CloneInfo; DELETE
	PathCloneSigned = "/v1/clones/{name}/signed" // GET: the signed manifest of the latest generation
)

// CloneInfo describes a clone.
type CloneInfo struct {
	Name            string    `json:"name"`
	Owner           string    `json:"owner"`
	Template        string    `json:"template"`
	TemplateVersion uint64    `json:"template_version"`
	Generation      uint64    `json:"generation"` // the latest committed generation, from 1
	Created         time.Time `json:"created"`
	Updated         time.Time `json:"updated"`
	Bytes           int64     `json:"bytes"` // logical size of all files
	// Shared lists the groups the clone is shared with, read-only.
	Shared []string `json:"shared,omitempty"`
	// Source is the shared clone this one was made from, as
	// OWNER/NAME@GENERATION; empty for a clone of a template.
	Source string `json:"source,omitempty"`
}

// Clone writeback routes: leases, generations, snapshots.
const (
	PathCloneLease       = "/v1/clones/{name}/lease"                    // POST LeaseRequest: acquire or renew; DELETE ?holder=H&epoch=E: release
	PathCloneGenerations = "/v1/clones/{name}/generations"              // POST unsigned manifest ?parent=G&epoch=E: commit the next generation
	PathCloneGeneration  = "/v1/clones/{name}/generations/{gen}/signed" // GET: a generation's signed manifest
	PathCloneSnapshots   = "/v1/clones/{name}/snapshots"                // POST SnapshotRequest: name the latest generation
	PathCloneRevert      = "/v1/clones/{name}/revert"                   // POST RevertRequest: a new generation equal to a snapshot
	PathCloneHistory     = "/v1/clones/{name}/history"                  // GET: CloneHistory
)

// LeaseRequest asks for the right to write a clone.
type LeaseRequest struct {
	Holder string `json:"holder"`      // who asks: a workstation's name
	TTL    int    `json:"ttl_seconds"` // how long the lease lasts unless renewed
	Force  bool   `json:"force"`       // take the lease from another holder (bumps the epoch)
}

// Lease is the right of one holder to write a clone until Expires. Every
// generation commit carries the lease's Epoch; a takeover bumps it, so a
// former holder's late commits are refused.
type Lease struct {
	Holder  string    `json:"holder"`
	Epoch   uint64    `json:"epoch"`
	Expires time.Time `json:"expires"`
}

// SnapshotRequest names the clone's latest generation.
type SnapshotRequest struct {
	Name string `json:"name"`
}

// RevertRequest makes a snapshot's tree the clone's next generation.
type RevertRequest struct {
	Snapshot string `json:"snapshot"`
	Holder   string `json:"holder"` // the lease holder doing it, or a new holder when none
}

// GenerationInfo describes one generation of a clone.
type GenerationInfo struct {
	Generation uint64    `json:"generation"`
	Created    time.Time `json:"created"`
	Bytes      int64     `json:"bytes"`
	Blocks     int       `json:"blocks"` // distinct data blocks
}

// SnapshotInfo names a generation.
type SnapshotInfo struct {
	Name       string    `json:"name"`
	Generation uint64    `json:"generation"`
	Created    time.Time `json:"created"`
}

// CloneHistory lists a clone's generations and snapshots, oldest first.
type CloneHistory struct {
	Clone       CloneInfo        `json:"clone"`
	Lease       *Lease           `json:"lease,omitempty"`
	Generations []GenerationInfo `json:"generations"`
	Snapshots   []SnapshotInfo   `json:"snapshots"`
}

// Multicast routes.
const (
	PathMulticast     = "/v1/multicast"      // GET: []MulticastSession, current and recent
	PathMulticastPush = "/v1/multicast/push" // POST PushRequest: send a template version to every workstation
)

// MulticastSession is a multicast send of one template version. Workstations
// join the ones for templates they lack; Key (when set) decrypts its
// payloads, and is handed out only over this authenticated API.
type MulticastSession struct {
	ID       uint32    `json:"id"`
	Template string    `json:"template"`
	Version  uint64    `json:"version"`
	Group    string    `json:"group"` // IP:port
	Key      []byte    `json:"key,omitempty"`
	State    string    `json:"state"` // queued, sending, done, failed
	Queued   time.Time `json:"queued"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// Sent and Needed are the session's data bytes on the wire and the
	// bytes the receivers lacked, once it is done.
	Sent   int64  `json:"sent,omitempty"`
	Needed int64  `json:"needed,omitempty"`
	Error  string `json:"error,omitempty"`
}

// PushRequest asks for a multicast session.
type PushRequest struct {
	Template string `json:"template"`
	Version  uint64 `json:"version"` // 0: latest
}
