package main

import (
	"context"
	"net"
	"os"
	"os/user"
	"strconv"
)

// peerKey keys the status caller's credentials in a request's context.
type peerKey struct{}

// peer is who connected to a mount's status socket: uid is known when ok.
type peer struct {
	uid uint32
	ok  bool
}

// withPeer puts the credentials of the process at the other end of c
// (a unix socket) in ctx, for forCaller.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uid, ok := peerUID(c)
	return context.WithValue(ctx, peerKey{}, peer{uid: uid, ok: ok})
}

// forCaller trims st to what the caller may see: root and the mount's
// own user see everything; another local user sees the clones only when
// the mount is theirs (its dvfs user is their login name), else the
// mount without its clones, since the clones are someone else's. Where
// the system does not tell who called, nothing is trimmed.
func forCaller(ctx context.Context, st mountStatus) mountStatus {
	p, _ := ctx.Value(peerKey{}).(peer)
	if !p.ok || p.uid == 0 || int(p.uid) == os.Getuid() {
		return st
	}
	if u, err := user.LookupId(strconv.FormatUint(uint64(p.uid), 10)); err == nil && u.Username == st.User {
		return st
	}
	st.HiddenClones = len(st.Clones)
	st.Clones = nil
	return st
}

// mayUnmount says whether the caller may unmount the mount: root, the
// user who mounted it, or anyone where the system does not tell who
// called (Windows: the socket is then in the mounting user's own temp
// directory, which the profile's ACL keeps other users out of). who is
// the caller's uid, when known.
func mayUnmount(ctx context.Context) (who int64, ok bool) {
	p, _ := ctx.Value(peerKey{}).(peer)
	if !p.ok {
		return -1, true
	}
	return int64(p.uid), p.uid == 0 || int(p.uid) == os.Getuid()
}
