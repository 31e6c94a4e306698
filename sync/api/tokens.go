package api

import (
	"fmt"
	"time"
)

// Token routes beside PathTokens (POST: make one, admin) and PathWhoAmI.
const (
	// GET ?user=NAME&all=1: []TokenInfo, newest first. An admin sees
	// every user's (or NAME's); a user sees their own. all=1 also lists
	// revoked and expired tokens.
	PathTokenList = "/v1/tokens"
	// DELETE: revoke the token; an admin any, a user their own.
	PathToken = "/v1/tokens/{id}"
	// POST LoginRequest, without a token: the server checks the password
	// with its directory and answers TokenResponse.
	PathLogin = "/v1/login"
)

// Where a token came from.
const (
	SourceLocal     = "local"     // dvfs token create (or stored before sources were)
	SourceDirectory = "directory" // dvfs login, through the server's LDAP directory
)

// Bounds of tokens and logins.
const (
	// TokenIDLen is the length of a token's ID: hex digits of the hash
	// the server keeps of it, so the ID hands out nothing of the secret.
	TokenIDLen = 16
	// MaxTokenLifetime bounds TokenRequest.ExpiresIn.
	MaxTokenLifetime = 10 * 366 * 24 * time.Hour
	// MaxPasswordLen bounds a LoginRequest's password.
	MaxPasswordLen = 256
	// MaxLoginBytes bounds a LoginRequest's body.
	MaxLoginBytes = 4 << 10
)

// TokenInfo describes a token (never its secret).
type TokenInfo struct {
	Principal
	Revoked time.Time `json:"revoked,omitzero"` // zero: not revoked
}

// LoginRequest trades a directory user's password for a token.
type LoginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// ValidTokenID reports whether id may be a token's ID: TokenIDLen
// lowercase hex digits. Errors wrap ErrMalformed.
func ValidTokenID(id string) error {
	if len(id) != TokenIDLen {
		return fmt.Errorf("%w: a token ID has %d hex digits, not %d bytes", ErrMalformed, TokenIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("%w: token ID %q is not lowercase hex", ErrMalformed, id)
		}
	}
	return nil
}

// Valid checks a LoginRequest's sizes and user name. An empty
// password is refused here: to LDAP it is an unauthenticated bind, which
// succeeds without proving anything. Errors wrap ErrMalformed.
func (l LoginRequest) Valid() error {
	if err := ValidPrincipalName(l.User); err != nil {
		return err
	}
	if l.Password == "" || len(l.Password) > MaxPasswordLen {
		return fmt.Errorf("%w: a password has 1-%d bytes, not %d", ErrMalformed, MaxPasswordLen, len(l.Password))
	}
	return nil
}
