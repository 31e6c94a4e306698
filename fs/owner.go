package fs

import (
	"context"
	"fmt"
)

// Owner is a user and group, as numeric IDs.
type Owner struct {
	UID, GID uint32
}

// IDMap maps owners between this workstation ("local" IDs, what stat
// shows and chown takes) and the server ("stored" IDs, what manifests and
// overlays keep), for labs where one person has different numeric IDs on
// different machines. UIDs and GIDs map local to stored; each map must be
// one-to-one. An ID in neither direction is the same on both sides.
type IDMap struct {
	UIDs, GIDs map[uint32]uint32
}

// idMapper applies an IDMap both ways.
type idMapper struct {
	uidOut, gidOut map[uint32]uint32 // local -> stored
	uidIn, gidIn   map[uint32]uint32 // stored -> local
}

func newIDMapper(m IDMap) (idMapper, error) {
	inv := func(kind string, fwd map[uint32]uint32) (map[uint32]uint32, error) {
		out := make(map[uint32]uint32, len(fwd))
		for local, stored := range fwd {
			if other, dup := out[stored]; dup {
				return nil, fmt.Errorf("fs: IDMap: local %ss %d and %d both map to %d", kind, min(local, other), max(local, other), stored)
			}
			out[stored] = local
		}
		return out, nil
	}
	var err error
	im := idMapper{uidOut: m.UIDs, gidOut: m.GIDs}
	if im.uidIn, err = inv("uid", m.UIDs); err != nil {
		return idMapper{}, err
	}
	if im.gidIn, err = inv("gid", m.GIDs); err != nil {
		return idMapper{}, err
	}
	return im, nil
}

func mapID(m map[uint32]uint32, id uint32) uint32 {
	if v, ok := m[id]; ok {
		return v
	}
	return id
}

// stored turns a local owner into the IDs a clone keeps.
func (im idMapper) stored(o Owner) Owner {
	return Owner{mapID(im.uidOut, o.UID), mapID(im.gidOut, o.GID)}
}

// local turns kept IDs into the owner this workstation shows.
func (im idMapper) local(o Owner) Owner {
	return Owner{mapID(im.uidIn, o.UID), mapID(im.gidIn, o.GID)}
}

type callerKey struct{}

// WithCaller returns ctx carrying the user who makes a request, as local
// IDs: what a clone creates for that request belongs to them (the group
// is the directory's when it is setgid, as on a local disk). Without it,
// new entries belong to Config.Owner.
func WithCaller(ctx context.Context, o Owner) context.Context {
	return context.WithValue(ctx, callerKey{}, o)
}

// caller is the local owner of what a request creates.
func (fsys *FS) caller(ctx context.Context) Owner {
	if o, ok := ctx.Value(callerKey{}).(Owner); ok {
		return o
	}
	return fsys.cfg.Owner
}
