package multicast

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
)

// sealer encrypts and authenticates data payloads with AES-GCM. The key
// comes over the authenticated API; the nonce is the session and the
// packet's sequence number, which the sender never repeats in a session.
// The packet header is authenticated as additional data. Integrity does
// not depend on it: every block is checked against the signed manifest
// whether or not it was encrypted.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) == 0 {
		return nil, nil
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("multicast: key: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: a}, nil
}

func nonce(session, seq uint32) (n [12]byte) {
	binary.BigEndian.PutUint32(n[4:], session)
	binary.BigEndian.PutUint32(n[8:], seq)
	return n
}

// seal encrypts plain into dst (which may be plain[:0]) and appends the tag.
func (s *sealer) seal(dst, plain, hdr []byte, session, seq uint32) []byte {
	n := nonce(session, seq)
	return s.aead.Seal(dst, n[:], plain, hdr)
}

// open decrypts a sealed payload in place.
func (s *sealer) open(sealed, hdr []byte, session, seq uint32) ([]byte, error) {
	n := nonce(session, seq)
	return s.aead.Open(sealed[:0], n[:], sealed, hdr)
}
