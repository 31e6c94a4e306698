package api

// Admin clone management, sharing and quotas.
//
// Every clone route (PathClone and those under it) and PathClones take
// ?owner=NAME to reach another user's clone: an admin may list, read and
// remove any user's; a member of a group a clone is shared with may read
// it (CloneInfo, its signed manifest, its blocks) and clone it; nobody
// else, and nobody writes another's clone. PathClones takes ?all (an
// admin: every user's clones) or ?shared (the clones shared with the
// caller's groups) instead.
const (
	// PathCloneShare: PUT shares the clone read-only with {group},
	// DELETE stops sharing it; both return the CloneInfo. Only the
	// clone's owner may.
	PathCloneShare = "/v1/clones/{name}/shares/{group}"
	// PathQuota: GET a user's QuotaInfo (the user or an admin); PUT
	// QuotaRequest sets it (an admin).
	PathQuota = "/v1/quotas/{user}"
)

// Query parameters of the clone routes.
const (
	// QueryOwner names the owner of the clone a request is about.
	QueryOwner = "owner"
	// QueryFrom, on a clone's creation, names the shared clone it is made
	// from, as OWNER/NAME, instead of ?template.
	QueryFrom = "from"
)

// ValidGroupName reports whether name may name a group: the rules of a
// principal's name (ValidPrincipalName), since the server keys shares by
// it. Errors wrap ErrMalformed.
func ValidGroupName(name string) error { return ValidPrincipalName(name) }

// QuotaRequest sets a user's quota on clone data.
type QuotaRequest struct {
	// Bytes is the quota; 0 means no bound.
	Bytes int64 `json:"bytes"`
	// Default, when set, drops the user's own quota: the server's
	// default (dvfs serve --quota-clone) applies again. Bytes is ignored.
	Default bool `json:"default,omitempty"`
}

// QuotaInfo is a user's quota and usage of clone data: the blocks of
// their clones (all generations) and of their uploads not yet committed
// that no template holds, counted in whole blocks.
type QuotaInfo struct {
	User string `json:"user"`
	// Used is the data counted against the quota, in bytes.
	Used int64 `json:"used_bytes"`
	// Quota is the bound in bytes; 0: none.
	Quota int64 `json:"quota_bytes"`
	// Default says Quota is the server's default, not set for the user.
	Default bool `json:"default"`
	// Pending is what the user uploaded that no commit names yet (a
	// bound of its own, dvfs serve --quota-pending).
	Pending int64 `json:"pending_bytes"`
}
