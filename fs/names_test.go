package fs

import (
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// winValid reports why Win32 could not open a file called w, or "".
func winValid(w string) string {
	switch {
	case w == "" || w == "." || w == "..":
		return "empty or a dot name"
	case !utf8.ValidString(w):
		return "not UTF-8"
	case strings.ContainsFunc(w, func(r rune) bool { return r < 0x80 && winForbidden(byte(r)) }):
		return "forbidden character"
	case strings.HasSuffix(w, " ") || strings.HasSuffix(w, "."):
		return "trailing dot or space"
	case winNameLen(w) > MaxNameLen:
		return "longer than 255 UTF-16 units"
	}
	if stem, _, _ := strings.Cut(w, "."); reservedStem(stem) {
		return "device name"
	}
	return ""
}

func TestShowName(t *testing.T) {
	for _, tc := range []struct{ stored, shown string }{
		{"disk.vmdk", "disk.vmdk"},
		{"a:b", "a\uF03Ab"},
		{`q?"*<>|\`, "q\uF03F\uF022\uF02A\uF03C\uF03E\uF07C\uF05C"},
		{"tab\there", "tab\uF009here"},
		{"dot.", "dot\uF02E"},
		{"space ", "space\uF020"},
		{"a. .", "a. \uF02E"},
		{"CON", "CO\uF04E"},
		{"con.txt", "co\uF06E.txt"},
		{"Lpt9.log.gz", "Lpt\uF039.log.gz"},
		{"AUX  .x", "AU\uF058  .x"},
		{"aux.", "aux\uF02E"},
		{"CON ", "CON\uF020"},
		{"COM¹", "COM\U000F00B9"},
		{"CONSOLE", "CONSOLE"},
		{"COM10", "COM10"},
		{"bad\xffutf8", "bad\uF0FFutf8"},
		{"pua\uF03A", "pua\uF000\uF03A"},
		{"pua\U000F0041", "pua\uF000\U000F0041"},
		{"é", "é"},
	} {
		if got := showName(tc.stored, false); got != tc.shown {
			t.Errorf("showName(%q) = %+q, want %+q", tc.stored, got, tc.shown)
		}
		if s, ok := storedName(tc.shown); s != tc.stored || !ok {
			t.Errorf("storedName(%+q) = %q, %v; want %q, true", tc.shown, s, ok, tc.stored)
		}
		if why := winValid(tc.shown); why != "" {
			t.Errorf("%+q: %s", tc.shown, why)
		}
	}
	// Names no mapping makes are refused, not stored as something else.
	for _, w := range []string{"a:b", "CON", "x ", "\uF061", "a\uF02Eb", "\uF000"} {
		if s, ok := storedName(w); ok {
			t.Errorf("storedName(%+q) = %q, accepted", w, s)
		}
	}
}

// TestFoldKeepsCase checks, for every character of the Basic
// Multilingual Plane, what nameIndex's proof rests on: folding leaves a
// character without case as it is, and turns one with case into one
// with case. So a case-apart name (no cased letter) folds to itself, and
// no plain name with a cased letter folds to it.
func TestFoldKeepsCase(t *testing.T) {
	for r := rune(0); r < 0x10000; r++ {
		u := unicode.ToUpper(r)
		if !cased(r) && u != r {
			t.Errorf("%U has no case but folds to %U", r, u)
		}
		if cased(r) && !cased(u) {
			t.Errorf("%U has case but folds to %U, which has none", r, u)
		}
	}
}

// checkShown checks one name's mapping both ways.
func checkShown(t *testing.T, s string) {
	t.Helper()
	for _, apart := range []bool{false, true} {
		w := showName(s, apart)
		if why := winValid(w); why != "" {
			t.Fatalf("showName(%q, %v) = %+q: %s", s, apart, w, why)
		}
		if got, _ := storedName(w); got != s {
			t.Fatalf("showName(%q, %v) = %+q reads back as %q", s, apart, w, got)
		}
		if apart && foldName(w) != w {
			t.Fatalf("case-apart %+q folds to %+q", w, foldName(w))
		}
	}
	if _, ok := storedName(showName(s, false)); !ok {
		t.Fatalf("plain name of %q not taken back", s)
	}
}

// validStored reports whether s can be a stored name (what manifests and
// checkName take).
func validStored(s string) bool { return checkName(s) == nil }

// FuzzShowName: every name a clone or template may hold shows as a name
// Win32 opens, and reads back as its own bytes (so the mapping is
// one-to-one); any string at all is decoded without a panic.
func FuzzShowName(f *testing.F) {
	for _, s := range []string{"a", "CON", "a:b", "x.", "\xff", "pua\uF03A", "COM¹.txt", "Foo", "ǅ", "ß", "\U00010400"} {
		f.Add(s, "")
	}
	f.Add("foo", "FOO")
	f.Fuzz(func(t *testing.T, a, b string) {
		storedName(a)
		foldName(a)
		if !validStored(a) || len(a) > MaxNameLen {
			return
		}
		checkShown(t, a)
		if validStored(b) && a != b {
			for _, apart := range [][2]bool{{false, false}, {true, true}, {false, true}} {
				if showName(a, apart[0]) == showName(b, apart[1]) {
					t.Fatalf("%q and %q both show as %+q", a, b, showName(a, apart[0]))
				}
			}
		}
	})
}

// checkIndex checks that every name of set shows, as a valid Windows name
// unique under fold, and is found by it.
func checkIndex(t *testing.T, x *nameIndex, set []string) {
	t.Helper()
	seen := map[string]string{}
	for _, s := range set {
		w, ok := x.show(s)
		if !ok {
			t.Fatalf("%q is not shown", s)
		}
		if why := winValid(w); why != "" {
			t.Fatalf("%q shows as %+q: %s", s, w, why)
		}
		k := foldName(w)
		if o, dup := seen[k]; dup {
			t.Fatalf("%q and %q both show as %+q under fold", o, s, w)
		}
		seen[k] = s
		for _, v := range []string{w, strings.ToLower(w), strings.ToUpper(w)} {
			if foldName(v) != k {
				continue // ß has no upper case, while ẞ's lower case is ß
			}
			if got, ok := x.find(v); !ok || got != s {
				t.Fatalf("find(%+q) = %q, %v; want %q", v, got, ok, s)
			}
		}
	}
	if len(x.shown) != len(set) || len(x.byKey) != len(set) {
		t.Fatalf("index holds %d shown, %d keys; want %d", len(x.shown), len(x.byKey), len(set))
	}
}

func TestNameIndexCaseGroups(t *testing.T) {
	x := newNameIndex(true, true)
	set := []string{"foo", "Foo", "FOO", "bar", "CON", "con", "a:b", "A:B"}
	for _, s := range set {
		x.add(s)
	}
	checkIndex(t, x, set)
	if w, _ := x.show("FOO"); w != "FOO" {
		t.Errorf("FOO (first by bytes) shows as %+q, want it plain", w)
	}
	if w, _ := x.show("foo"); w != "\uF066\uF06F\uF06F" {
		t.Errorf("foo shows as %+q", w)
	}
	if o, ok := x.clash("fOO"); !ok || o != "FOO" {
		t.Errorf("clash(fOO) = %q, %v", o, ok)
	}
	x.remove("FOO")
	set = slices.DeleteFunc(set, func(s string) bool { return s == "FOO" })
	checkIndex(t, x, set)
	if w, _ := x.show("Foo"); w != "Foo" {
		t.Errorf("after FOO went, Foo shows as %+q", w)
	}
}

// FuzzNameIndex: whatever names a directory holds, and in whatever order
// they came and went, each shows under a name unique under fold, found by
// it, and the same as when the directory is indexed afresh.
func FuzzNameIndex(f *testing.F) {
	f.Add("foo/Foo/FOO/bar/con/CON/x.", uint8(3))
	f.Add("ß/ẞ/ss/SS/ǅ/ǆ/Ǆ", uint8(1))
	f.Fuzz(func(t *testing.T, names string, drop uint8) {
		var set []string
		for _, s := range strings.Split(names, "/") {
			if validStored(s) && !slices.Contains(set, s) {
				set = append(set, s)
			}
		}
		x := newNameIndex(true, true)
		for _, s := range set {
			x.add(s)
		}
		checkIndex(t, x, set)
		if len(set) == 0 {
			return
		}
		gone := set[int(drop)%len(set)]
		x.remove(gone)
		set = slices.DeleteFunc(set, func(s string) bool { return s == gone })
		checkIndex(t, x, set)
		fresh := newNameIndex(true, true)
		for i := len(set) - 1; i >= 0; i-- {
			fresh.add(set[i])
		}
		for _, s := range set {
			a, _ := x.show(s)
			b, _ := fresh.show(s)
			if a != b {
				t.Fatalf("%q shows as %+q, and as %+q when indexed afresh", s, a, b)
			}
		}
	})
}
