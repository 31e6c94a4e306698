package fs

// Windows names (Config.MapNames, Config.CaseInsensitive). A template
// published on Linux may hold names Win32 cannot open: with the characters
// `"*:<>?\|`, control characters, a trailing dot or space, a device name
// (CON, NUL.txt), bytes that are not UTF-8, or two names that differ only
// in case. Such a name is shown mapped, reversibly, and a name made
// through the mount is mapped back, so what is stored keeps its bytes.
//
// The mapping is Interix's, which Cygwin took up: a forbidden ASCII
// character c is shown as the private-use character U+F000+c, and "when
// reading filenames, all characters with a value of 0xf0xx are simply
// transformed back" (Corinna Vinschen, cygwin-developers, 2008-03-11,
// https://sourceware.org/pipermail/cygwin-developers/2008-March/008472.html;
// Cygwin's user guide, "Special characters in filenames"). WinFsp's FUSE
// layer maps 0x01-0x1F and `"*:<>?\|` the same way (FspPosixInvalidPathChars
// in its src/shared/ku/posix.c; fs/cgofuse undoes that on the way in), so
// a name copied between a Cygwin or WinFsp file system and a dvfs mount
// keeps its meaning. dvfs extends the scheme so that every stored name
// has exactly one shown name and back (fuzzed in names_test.go):
//
//	U+F001..U+F0FF   byte c: an ASCII character Windows forbids here, or
//	                 a byte that is not UTF-8
//	U+F0000+r        the character r (r >= 0x80) mapped: the last of a
//	                 device name (COM¹), or a letter shown case-distinct
//	U+F000 then r    r itself, when r is in one of the two ranges above
//
// What is mapped: `"*:<>?\|` and 0x01-0x1F everywhere (and '/', which no
// stored name holds), a trailing dot or space, the last character of a
// device name's stem (CON -> CO\uF04E, com1.txt -> com\uF031.txt), bytes
// that are not UTF-8, and for a name that differs only in case from
// another entry of its directory (and sorts after it) every cased letter,
// so that the two stay apart under Windows' case-insensitive compare.
// A shown name is never longer in UTF-16 units than the stored name is in
// bytes, so a stored name of at most 255 bytes fits Windows' limit.

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

const (
	mapByte = 0xF000  // U+F000+c: byte c
	mapRune = 0xF0000 // U+F0000+r: rune r
	escRune = 0xF000  // U+F000 then r: r as it is
)

// inMapRange reports whether r is a character the decoder gives another
// meaning to, so that a stored name holding it must escape it.
func inMapRange(r rune) bool {
	return r >= mapByte && r <= mapByte+0xFF || r >= mapRune && r <= mapRune+0xFFFF
}

// winForbidden reports whether ASCII c may appear nowhere in a Windows
// name.
func winForbidden(c byte) bool {
	return c < 0x20 || strings.IndexByte(`"*/:<>?\|`, c) >= 0
}

// reservedStem reports whether a name whose part before its first dot is
// stem names a device (case-insensitively, trailing spaces ignored): the
// names of "Naming Files, Paths, and Namespaces" (learn.microsoft.com),
// with CONIN$ and CONOUT$, which CreateFile opens as the console.
func reservedStem(stem string) bool {
	stem = strings.ToUpper(strings.TrimRight(stem, " "))
	switch stem {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return true
	}
	if len(stem) < 4 || stem[:3] != "COM" && stem[:3] != "LPT" {
		return false
	}
	switch stem[3:] {
	case "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³":
		return true
	}
	return false
}

// stemEnd returns the offset of the last rune of a device stem of s (the
// rune to map), or -1 when s names no device.
func stemEnd(s string) int {
	t := s
	if strings.HasSuffix(s, ".") || strings.HasSuffix(s, " ") {
		t = s[:len(s)-1] + "\x01" // shown mapped: "aux." is no device name then
	}
	stem, _, _ := strings.Cut(t, ".")
	if !reservedStem(stem) {
		return -1
	}
	stem = strings.TrimRight(stem, " ")
	_, size := utf8.DecodeLastRuneInString(stem)
	return len(stem) - size
}

// cased reports whether r has another case (Windows might fold it).
func cased(r rune) bool {
	return r < 0x10000 && (unicode.SimpleFold(r) != r || unicode.ToUpper(r) != r || unicode.ToLower(r) != r)
}

// showName returns the name stored as s shows as; caseApart also maps
// every cased letter (the name differs only in case from one shown
// before it).
func showName(s string, caseApart bool) string {
	dev := stemEnd(s)
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		last := i+size == len(s)
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(mapByte + rune(s[i]))
		case r == 0:
			b.WriteRune(utf8.RuneError) // no stored name holds a NUL
		case r < 0x80 && (winForbidden(byte(r)) || last && (r == ' ' || r == '.')):
			b.WriteRune(mapByte + r)
		case inMapRange(r):
			b.WriteRune(escRune)
			b.WriteRune(r)
		case i == dev || caseApart && cased(r):
			if r < 0x80 {
				b.WriteRune(mapByte + r)
			} else {
				b.WriteRune(mapRune + r)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	if b.Len() == len(s) && b.String() == s {
		return s
	}
	return b.String()
}

// storedName returns the name that shows as w, and whether w is how that
// name shows (a name made through the mount must be; one that is not,
// such as "\uF061" for "a", is refused rather than stored as something
// that then shows under another name).
func storedName(w string) (string, bool) {
	if !strings.ContainsFunc(w, inMapRange) {
		return w, showName(w, false) == w
	}
	var b strings.Builder
	b.Grow(len(w))
	for i := 0; i < len(w); {
		r, size := utf8.DecodeRuneInString(w[i:])
		i += size
		switch {
		case r == escRune && i < len(w):
			r, size = utf8.DecodeRuneInString(w[i:])
			b.WriteString(w[i : i+size])
			i += size
		case r > mapByte && r <= mapByte+0xFF:
			b.WriteByte(byte(r - mapByte))
		case r >= mapRune && r <= mapRune+0xFFFF && utf8.ValidRune(r-mapRune):
			b.WriteRune(r - mapRune)
		default:
			b.WriteString(w[i-size : i])
		}
	}
	s := b.String()
	return s, showName(s, false) == w
}

// foldName is the key two names are the same under when case does not
// count: every character of the Basic Multilingual Plane in upper case,
// as the upcase table NTFS and WinFsp compare names with (it has no
// entries past U+FFFF).
func foldName(s string) string {
	ascii, lower := true, false
	for i := 0; i < len(s); i++ {
		ascii = ascii && s[i] < utf8.RuneSelf
		lower = lower || 'a' <= s[i] && s[i] <= 'z'
	}
	if ascii {
		if !lower {
			return s
		}
		b := []byte(s)
		for i, c := range b {
			if 'a' <= c && c <= 'z' {
				b[i] = c - ('a' - 'A')
			}
		}
		return string(b)
	}
	return strings.Map(func(r rune) rune {
		if r < 0x10000 {
			return unicode.ToUpper(r)
		}
		return r
	}, s)
}

// winNameLen is the length of a shown name in UTF-16 units, Windows' unit
// for a name's 255.
func winNameLen(w string) int {
	n := 0
	for _, r := range w {
		n += utf16.RuneLen(r)
	}
	return n
}

// nameIndex shows one directory's entries under Windows names and finds
// an entry by the name it shows, in O(1): stored -> shown, and the key of
// each shown name (folded when case does not count) -> stored. Entries
// whose shown names have one key form a group: the first by stored bytes
// shows plainly, the others case-apart. A case-apart name never has the
// key of any other shown name (it has no cased letter left to fold, and a
// plain name keeps at least one; TestFoldKeepsCase checks every
// character), so adding or removing an entry changes at most its group.
// The caller guards it.
type nameIndex struct {
	mapNames bool                // show names Windows forbids mapped
	fold     bool                // case does not count
	shown    map[string]string   // stored -> shown
	byKey    map[string]string   // key(shown) -> stored
	groups   map[string][]string // key(plain) -> its stored names, sorted, when more than one
}

func newNameIndex(mapNames, fold bool) *nameIndex {
	return &nameIndex{mapNames: mapNames, fold: fold, shown: map[string]string{}, byKey: map[string]string{}}
}

// plain is how s shows when nothing else in its directory folds like it.
func (x *nameIndex) plain(s string) string {
	if !x.mapNames {
		return s
	}
	return showName(s, false)
}

func (x *nameIndex) key(w string) string {
	if x.fold {
		return foldName(w)
	}
	return w
}

// add indexes the entry stored as s.
func (x *nameIndex) add(s string) {
	if _, ok := x.shown[s]; ok {
		return
	}
	p := x.plain(s)
	k := x.key(p)
	first, taken := x.byKey[k]
	if !taken {
		x.shown[s], x.byKey[k] = p, s
		return
	}
	g := x.groups[k]
	if g == nil {
		g = []string{first}
		if x.groups == nil {
			x.groups = map[string][]string{}
		}
	}
	i, _ := slices.BinarySearch(g, s)
	x.regroup(k, slices.Insert(g, i, s))
}

// remove forgets the entry stored as s.
func (x *nameIndex) remove(s string) {
	w, ok := x.shown[s]
	if !ok {
		return
	}
	delete(x.shown, s)
	delete(x.byKey, x.key(w))
	k := x.key(x.plain(s))
	g := x.groups[k]
	if g == nil {
		return
	}
	if i, found := slices.BinarySearch(g, s); found {
		g = slices.Delete(g, i, i+1)
	}
	x.regroup(k, g)
}

// regroup shows the group of key k, g sorted: the first plainly, the
// others case-apart.
func (x *nameIndex) regroup(k string, g []string) {
	for _, m := range g {
		if w, ok := x.shown[m]; ok {
			delete(x.byKey, x.key(w))
		}
	}
	for i, m := range g {
		w := x.plain(m)
		if i > 0 {
			w = showName(m, true)
		}
		x.shown[m], x.byKey[x.key(w)] = w, m
	}
	if len(g) > 1 {
		x.groups[k] = g
	} else {
		delete(x.groups, k)
	}
}

// find returns the stored name of the entry shown as w (whatever its
// case when case does not count).
func (x *nameIndex) find(w string) (string, bool) {
	s, ok := x.byKey[x.key(w)]
	return s, ok
}

// show returns how the entry stored as s shows.
func (x *nameIndex) show(s string) (string, bool) {
	w, ok := x.shown[s]
	return w, ok
}

// clash returns another entry that a new entry stored as s would show
// alike with, if there is one.
func (x *nameIndex) clash(s string) (string, bool) {
	if _, ok := x.shown[s]; ok {
		return "", false // s itself: replaced, not made
	}
	o, ok := x.byKey[x.key(x.plain(s))]
	return o, ok && o != s
}

// newName returns what a new entry the mount is asked to call w is
// stored as: ErrInvalid when w is not how any name shows.
func (x *nameIndex) newName(w string) (string, bool) {
	if !x.mapNames {
		return w, true
	}
	return storedName(w)
}
