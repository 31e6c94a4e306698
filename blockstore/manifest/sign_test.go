package manifest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSignOpen(t *testing.T) {
	want := vmwareManifest(1000)
	body := mustMarshal(t, want)
	signed := Sign(body, testKey)
	m, gotBody, err := Open(signed, testPub())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatal("opened manifest differs from the signed one")
	}
	if !bytes.Equal(gotBody, body) {
		t.Fatal("Open returns another body")
	}
	if !bytes.Equal(Sign(body, testKey), signed) {
		t.Fatal("signing is not deterministic")
	}
	if got := len(signed) - len(body); got != 8+8+3+64 {
		t.Errorf("envelope adds %d bytes", got)
	}
}

func TestOpenBadSignature(t *testing.T) {
	body := mustMarshal(t, smallManifest())
	signed := Sign(body, testKey)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	bodyStart := len(signed) - ed25519.SignatureSize - len(body)
	flip := func(i int) []byte {
		b := bytes.Clone(signed)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		signed []byte
		pub    ed25519.PublicKey
		want   string
	}{
		{"flipped byte in the body", flip(bodyStart + len(body)/2), testPub(), "does not verify with key " + KeyID(testPub()) + ": the manifest or its signature was altered"},
		{"flipped first body byte", flip(bodyStart), testPub(), "was altered"},
		{"flipped byte in the signature", flip(len(signed) - 1), testPub(), "was altered"},
		{"flipped key ID", flip(8), testPub(), "signed by key"},
		{"wrong key", signed, otherKey.Public().(ed25519.PublicKey), "signed by key " + KeyID(testPub()) + ", not by the trusted key " + KeyID(otherKey.Public().(ed25519.PublicKey))},
		{"signed by another key", Sign(body, otherKey), testPub(), "not by the trusted key " + KeyID(testPub())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, b, err := Open(tt.signed, tt.pub)
			if err == nil || m != nil || b != nil {
				t.Fatalf("Open = %v, %d bytes, %v; want an error", m, len(b), err)
			}
			if !errors.Is(err, ErrBadSignature) {
				t.Errorf("error %q does not wrap ErrBadSignature", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestOpenMalformed(t *testing.T) {
	body := mustMarshal(t, smallManifest())
	signed := Sign(body, testKey)
	withLen := func(n uint64, b []byte) []byte {
		e := append([]byte(nil), signed[:sigHeader]...)
		e = binary.AppendUvarint(e, n)
		return append(e, b...)
	}
	// The body length with a needless continuation byte.
	nonShortest := binary.AppendUvarint(bytes.Clone(signed[:sigHeader]), uint64(len(body)))
	nonShortest[len(nonShortest)-1] |= 0x80
	nonShortest = append(nonShortest, 0)
	nonShortest = append(nonShortest, signed[len(nonShortest)-1:]...)
	tests := []struct {
		name   string
		signed []byte
		want   string
	}{
		{"empty", nil, "signed envelope truncated: 0 bytes, at least 81 needed"},
		{"unsigned manifest", append(body, make([]byte, 100)...), "not a signed dvfs manifest"},
		{"future version", append(append([]byte(sigMagic), 2), signed[8:]...), "signed envelope version 2"},
		{"signature cut", signed[:len(signed)-1], "signed envelope truncated"},
		{"trailing bytes", append(bytes.Clone(signed), 0), "signed envelope trailing bytes"},
		{"length overflows", withLen(1<<64-1, make([]byte, 70)), "signed envelope truncated"},
		{"length wraps to fit", withLen(1<<64-64+10, make([]byte, 10)), "signed envelope truncated"},
		{"length not shortest", nonShortest, "body length not in its shortest form"},
		{"bad length varint", append(bytes.Clone(signed[:sigHeader]), bytes.Repeat([]byte{0xff}, 80)...), "bad body length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Open(tt.signed, testPub())
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Open: %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
	t.Run("signed malformed body", func(t *testing.T) {
		_, _, err := Open(Sign([]byte("DVFSMAN\x01junk"), testKey), testPub())
		if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrBadSignature) {
			t.Fatalf("Open: %v, want ErrMalformed only", err)
		}
	})
	t.Run("short public key", func(t *testing.T) {
		_, _, err := Open(signed, testPub()[:31])
		if err == nil || errors.Is(err, ErrBadSignature) || errors.Is(err, ErrMalformed) {
			t.Fatalf("Open with a 31-byte key: %v", err)
		}
	})
}

// Every prefix of a signed manifest is an error, never a manifest or a panic.
func TestOpenTruncated(t *testing.T) {
	signed := Sign(mustMarshal(t, smallManifest()), testKey)
	for i := range len(signed) {
		m, _, err := Open(signed[:i], testPub())
		if err == nil || m != nil {
			t.Fatalf("Open of the first %d of %d bytes succeeded", i, len(signed))
		}
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("Open of the first %d of %d bytes: %v, want ErrMalformed", i, len(signed), err)
		}
	}
}

func TestKeyID(t *testing.T) {
	id := KeyID(testPub())
	if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Fatalf("KeyID = %q, want 16 hex digits", id)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	if KeyID(other.Public().(ed25519.PublicKey)) == id {
		t.Fatal("two keys share a KeyID")
	}
	if KeyID(testPub()) != id {
		t.Fatal("KeyID is not stable")
	}
}
