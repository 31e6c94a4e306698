package fstest

import (
	iofs "io/fs"
	"strings"
)

// LinuxNames is a tree as a Linux machine may publish it, with names
// Win32 cannot open (forbidden characters, device names, a trailing dot
// or space, a control character, a byte that is not UTF-8) and names
// that differ only in case, each regular file with content of its own.
func LinuxNames() []Entry {
	var out []Entry
	for i, p := range []string{
		"a:b.txt", "CON", "nul.lck", "dot.", "space ", "tab\there", "bad\xffname",
		"Disk.vmdk", "disk.vmdk", "DISK.VMDK", "sub", "sub/x?y", "sub/Q", "sub/q",
	} {
		e := Entry{Path: p, Mode: 0o644, Size: int64(1000 + i), Content: Pattern(uint64(i+1), 0)}
		if p == "sub" {
			e = Entry{Path: p, Mode: iofs.ModeDir | 0o755}
		}
		out = append(out, e)
	}
	return out
}

// StoredOf is the stored name a name shown with fs.Config.MapNames
// stands for, decoded here on its own as a check on fs: U+F000+c is byte
// c, U+F0000+r is r (the escape U+F000, which LinuxNames never needs,
// is not decoded).
func StoredOf(shown string) string {
	var b strings.Builder
	for _, r := range shown {
		switch {
		case r > 0xF000 && r <= 0xF0FF:
			b.WriteByte(byte(r - 0xF000))
		case r >= 0xF0000 && r <= 0xFFFFF:
			b.WriteRune(r - 0xF0000)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
