package cgofuse

import "strings"

// fromWinFsp undoes what WinFsp's FUSE layer does to a path before it
// reaches the file system. WinFsp maps the characters Windows forbids in
// names the way Cygwin does: a name the file system lists with one of
// them shows with U+F000 added to it (FspPosixDecodeWindowsPath), and a
// Windows name holding U+F000+c for such a c reaches the file system with
// c (FspPosixMapWindowsToPosixPath; src/shared/ku/posix.c, the table
// FspPosixInvalidPathChars: 0x01-0x1F and " * : < > ? \ |). The core's
// Windows view (fs.Config.MapNames) maps these itself, and lists no name
// holding one, so WinFsp leaves its listings alone; but the names Windows
// then opens arrive with WinFsp's mapping undone, and must have it done
// again for the core to find them. Windows never passes these characters
// in a name (Win32 refuses them), so each one in p came from U+F000+c.
func fromWinFsp(p string) string {
	if !strings.ContainsFunc(p, winfspMapped) {
		return p
	}
	var b strings.Builder
	b.Grow(len(p) + 8)
	for i := 0; i < len(p); i++ {
		if c := p[i]; winfspMapped(rune(c)) {
			b.WriteRune(0xF000 + rune(c))
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// winfspMapped reports whether WinFsp maps r (FspPosixInvalidPathChars).
func winfspMapped(r rune) bool {
	return r > 0 && r < 0x20 || r < 0x80 && strings.ContainsRune(`"*:<>?\|`, r)
}
