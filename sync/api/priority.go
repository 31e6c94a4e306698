package api

import "context"

// HeaderPriority marks a fetch (PathFetch) as background work: the
// server serves such fetches after the fetches readers are waiting for,
// server-wide, at a bounded rate and a few at a time. Its one value is
// PriorityBackground; any other value, or none, is a reader's fetch.
const HeaderPriority = "Dvfs-Priority"

// PriorityBackground is HeaderPriority's value for background work: a
// workstation filling its cache with blocks nobody is reading yet.
const PriorityBackground = "background"

type backgroundKey struct{}

// WithBackground returns a context whose fetches are background work
// (HeaderPriority).
func WithBackground(ctx context.Context) context.Context {
	return context.WithValue(ctx, backgroundKey{}, true)
}

// IsBackground says whether ctx came from WithBackground.
func IsBackground(ctx context.Context) bool {
	b, _ := ctx.Value(backgroundKey{}).(bool)
	return b
}
