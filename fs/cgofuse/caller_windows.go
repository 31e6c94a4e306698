package cgofuse

import "context"

// caller is the context of a request that creates: on Windows, without
// the requesting user. WinFsp names a Windows account by a number of its
// own (FspPosixMapSidToUid: 0x30000 plus the RID for a local account),
// which means nothing on the server or on a Linux workstation, so what a
// clone makes here belongs to fs.Config.Owner. What Windows shows is
// unaffected: with uid=-1,gid=-1 (mountArgs) WinFsp shows every entry as
// the mounting user's.
func caller() context.Context { return context.Background() }
