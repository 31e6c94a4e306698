package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// A signed manifest travels and rests in an envelope:
//
//	magic      "DVFSSIG" and the envelope version byte 1
//	key ID     8 bytes: the signer's key fingerprint (KeyID, as bytes)
//	length     uvarint, the body's length, in its shortest form
//	body       the manifest's binary form (MarshalBinary)
//	signature  64 bytes: ed25519 over every byte before it
//
// The signature covers the magic and the key ID too, so a signature made
// for something else with the same key is never taken for a manifest's.
// The key ID only lets a failure name the key that signed; trust comes
// from the signature alone.
const (
	sigMagic   = "DVFSSIG"
	sigVersion = 1
	keyIDLen   = 8
	sigHeader  = len(sigMagic) + 1 + keyIDLen
)

// Sign wraps body, a manifest's binary form, in a signed envelope. It does
// not check body: sign what MarshalBinary returned. It panics if key is not
// an ed25519 private key of ed25519.PrivateKeySize bytes.
func Sign(body []byte, key ed25519.PrivateKey) []byte {
	if len(key) != ed25519.PrivateKeySize {
		panic(fmt.Sprintf("manifest: private key of %d bytes, want %d", len(key), ed25519.PrivateKeySize))
	}
	b := make([]byte, 0, sigHeader+binary.MaxVarintLen64+len(body)+ed25519.SignatureSize)
	b = append(b, sigMagic...)
	b = append(b, sigVersion)
	b = append(b, keyID(key.Public().(ed25519.PublicKey))...)
	b = binary.AppendUvarint(b, uint64(len(body)))
	b = append(b, body...)
	return append(b, ed25519.Sign(key, b)...)
}

// Open checks the envelope signed against the trusted key pub and decodes
// the manifest inside. The signature is checked before a byte of the body
// is decoded. It returns the manifest and its body, which aliases signed.
//
// An envelope that is truncated, has trailing bytes or is not an envelope
// gives an error wrapping ErrMalformed; a signature that does not verify
// with pub, one wrapping ErrBadSignature; a body that does not decode, one
// wrapping ErrMalformed (only the holder of the private key can cause it).
func Open(signed []byte, pub ed25519.PublicKey) (*Manifest, []byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, nil, fmt.Errorf("manifest: public key of %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	body, signer, sig, err := parseEnvelope(signed)
	if err != nil {
		return nil, nil, err
	}
	if !ed25519.Verify(pub, signed[:len(signed)-ed25519.SignatureSize], sig) {
		trusted := keyID(pub)
		if !bytes.Equal(signer, trusted) {
			return nil, nil, fmt.Errorf("%w: signed by key %x, not by the trusted key %x", ErrBadSignature, signer, trusted)
		}
		return nil, nil, fmt.Errorf("%w: does not verify with key %x: the manifest or its signature was altered", ErrBadSignature, trusted)
	}
	m, err := Unmarshal(body)
	if err != nil {
		return nil, nil, err
	}
	return m, body, nil
}

// parseEnvelope finds the parts of a signed envelope without checking the
// signature.
func parseEnvelope(b []byte) (body, signer, sig []byte, err error) {
	if len(b) < sigHeader+1+ed25519.SignatureSize {
		return nil, nil, nil, fmt.Errorf("%w: signed envelope truncated: %d bytes, at least %d needed", ErrMalformed, len(b), sigHeader+1+ed25519.SignatureSize)
	}
	if string(b[:len(sigMagic)]) != sigMagic {
		return nil, nil, nil, fmt.Errorf("%w: not a signed dvfs manifest", ErrMalformed)
	}
	if v := b[len(sigMagic)]; v != sigVersion {
		return nil, nil, nil, fmt.Errorf("%w: signed envelope version %d, this dvfs reads version %d", ErrMalformed, v, sigVersion)
	}
	signer = b[len(sigMagic)+1 : sigHeader]
	n, k := binary.Uvarint(b[sigHeader:])
	switch {
	case k <= 0:
		return nil, nil, nil, fmt.Errorf("%w: signed envelope: bad body length (byte %d)", ErrMalformed, sigHeader)
	case k > 1 && b[sigHeader+k-1] == 0:
		return nil, nil, nil, fmt.Errorf("%w: signed envelope: body length not in its shortest form (byte %d)", ErrMalformed, sigHeader)
	}
	rest := b[sigHeader+k:]
	if have := uint64(len(rest)); have != n+ed25519.SignatureSize || n > have {
		what := "truncated"
		if have > n && have-n > ed25519.SignatureSize {
			what = "trailing bytes"
		}
		return nil, nil, nil, fmt.Errorf("%w: signed envelope %s: %d bytes after the header, the %d-byte body and signature need %d", ErrMalformed, what, have, n, n+ed25519.SignatureSize)
	}
	return rest[:n], signer, rest[n:], nil
}

// KeyID returns a short fingerprint of a public key for logs and for people
// to compare: the first 16 hex digits of the SHA-256 of its 32 raw bytes.
// A signed envelope carries the signer's.
func KeyID(pub ed25519.PublicKey) string {
	return hex.EncodeToString(keyID(pub))
}

func keyID(pub ed25519.PublicKey) []byte {
	sum := sha256.Sum256(pub)
	return sum[:keyIDLen]
}
