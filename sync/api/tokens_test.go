package api

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzLoginRequest: a login body the server decodes either is refused as
// malformed or holds a valid name and a password of 1-MaxPasswordLen
// bytes.
func FuzzLoginRequest(f *testing.F) {
	f.Add([]byte(`{"user":"alice","password":"pw"}`))
	f.Add([]byte(`{"user":"alice","password":""}`))
	f.Add([]byte(`{"user":"*)(uid=*","password":"x"}`))
	f.Add([]byte(`{"user":"alice"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req LoginRequest
		if json.Unmarshal(b, &req) != nil {
			return
		}
		err := req.Valid()
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%v does not wrap ErrMalformed", err)
			}
			return
		}
		if ValidPrincipalName(req.User) != nil || req.Password == "" || len(req.Password) > MaxPasswordLen {
			t.Fatalf("valid: %q", b)
		}
	})
}

func TestValidTokenID(t *testing.T) {
	for id, ok := range map[string]bool{
		"0123456789abcdef":  true,
		"0123456789ABCDEF":  false,
		"0123456789abcde":   false,
		"0123456789abcdef0": false,
		"../../0123456789a": false,
		"":                  false,
	} {
		if err := ValidTokenID(id); (err == nil) != ok || err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("ValidTokenID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}
