package clones

import (
	"bytes"
	"testing"
)

func TestSetDisplayName(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"replace", "a = \"1\"\ndisplayName = \"xp\"\nb = \"2\"\n", "a = \"1\"\ndisplayName = \"lab1\"\nb = \"2\"\n"},
		{"case and spaces", "DisplayName=\"xp\"\n", "displayName = \"lab1\"\n"},
		{"crlf kept", "displayName = \"xp\"\r\nb = \"2\"\r\n", "displayName = \"lab1\"\r\nb = \"2\"\r\n"},
		{"added", "a = \"1\"\n", "a = \"1\"\ndisplayName = \"lab1\"\n"},
		{"added without final newline", "a = \"1\"", "a = \"1\"\ndisplayName = \"lab1\"\n"},
		{"empty", "", "displayName = \"lab1\"\n"},
		{"only first replaced", "displayName = \"a\"\ndisplayName = \"b\"\n", "displayName = \"lab1\"\ndisplayName = \"b\"\n"},
		{"similar key untouched", "displayNameX = \"a\"\n", "displayNameX = \"a\"\ndisplayName = \"lab1\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(SetDisplayName([]byte(tt.in), "lab1")); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	if got := string(SetDisplayName(nil, `a"b|c`)); got != "displayName = \"a|22b|7Cc\"\n" {
		t.Fatalf("escaping: %q", got)
	}
}

// FuzzSetDisplayName checks that the rewrite keeps every other line and
// is idempotent.
func FuzzSetDisplayName(f *testing.F) {
	f.Add([]byte("displayName = \"xp\"\nmemsize = \"512\"\n"), "lab")
	f.Add([]byte("\r\n\r\n"), "x\"y")
	f.Fuzz(func(t *testing.T, vmx []byte, name string) {
		once := SetDisplayName(vmx, name)
		if !bytes.Equal(SetDisplayName(once, name), once) {
			t.Fatal("not idempotent")
		}
		if !bytes.Contains(once, []byte("displayName = "+quoteVMX(name))) {
			t.Fatal("name not set")
		}
		if bytes.Count(once, []byte("\n")) < bytes.Count(vmx, []byte("\n")) {
			t.Fatal("lost lines")
		}
	})
}
