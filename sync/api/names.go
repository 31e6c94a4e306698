package api

import "fmt"

// MaxPrincipalNameLen bounds a principal's (a token's) name.
const MaxPrincipalNameLen = 64

// ValidPrincipalName reports whether name may name a principal: 1-64
// bytes of ASCII letters, digits, '.', '_', '-' and '@', not starting
// with '.' or '-'. The server keys a user's clones by it and workstations
// name directories after it, so it can never be a path of its own ("..",
// "a/b") or hold a byte a filesystem or a terminal treats specially.
// Errors wrap ErrMalformed.
func ValidPrincipalName(name string) error {
	if name == "" || len(name) > MaxPrincipalNameLen {
		return fmt.Errorf("%w: a principal's name has 1-%d bytes, not %d", ErrMalformed, MaxPrincipalNameLen, len(name))
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("%w: principal name %q starts with %q", ErrMalformed, name, name[0])
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@' {
			continue
		}
		return fmt.Errorf("%w: principal name %q holds byte %#x (letters, digits, '.', '_', '-', '@' only)", ErrMalformed, name, c)
	}
	return nil
}
