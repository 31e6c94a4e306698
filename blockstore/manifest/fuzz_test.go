package manifest

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus under testdata/fuzz")

// seeds are encoded manifests for the corpora: every shape the encoding
// has (dirs, symlinks, hole and ID runs, zero and extreme times, special
// permission bits; in format 2 owners, atimes, named pipes, sockets,
// devices and hard links), each small. The format-2 ones are named "v2-".
func seeds(t testing.TB) map[string][]byte {
	m := map[string][]byte{
		"small":   mustMarshal(t, smallManifest()),
		"vmware":  mustMarshal(t, vmwareManifest(40)),
		"empty":   mustMarshal(t, &Manifest{Kind: KindTemplate, Name: "e", BlockSize: 4096}),
		"builder": header().uv(2).regular("a", 3*4096).uv(1<<1).id(testID(1)).uv(1<<1|1).uv(1<<1).id(testID(1)).str("l").uv(2<<12|0o777, 0, 0).str("a"),

		"v2-every-kind": mustMarshal(t, everyKindManifest()),
		"v2-builder": header2(flagOwners).uv(4).
			str("a").uv(0o644, 4097, 0, 2, 1000, 100).uv(1<<1).id(testID(1)).uv(1<<1|1).
			str("c").uv(typeCharDevice<<12|0o666, 0, 0, 0, 0, 0, 1<<8|3).
			link2("d", "a").
			str("p").uv(typeNamedPipe<<12|0o600, 0, 0, 0, 1, 2),
	}
	for name, f := range map[string]func(*Manifest){
		"uncommitted": func(m *Manifest) { m.Version, m.Parent, m.Created = 0, 4, minTime.UTC() },
		"big-blocks":  func(m *Manifest) { m.BlockSize = 4 << 20; m.Files[1].Size = 5*(4<<20) + 1 },
		"clone":       func(m *Manifest) { m.Kind, m.Version, m.Parent = KindClone, 9, 8 },

		"v2-owners":    func(m *Manifest) { m.Owners = true; m.Files[1].UID, m.Files[1].GID = 1000, math.MaxUint32 },
		"v2-atime":     func(m *Manifest) { m.Files[1].ATime = t0.Add(time.Hour); m.Files[2].ATime = maxTime.UTC() },
		"v2-hard-link": func(m *Manifest) { m.Files = append(m.Files, hardLink("d/m", m.Files[1]), hardLink("d/n", m.Files[2])) },
		"v2-specials": func(m *Manifest) {
			m.Files = append(m.Files,
				File{Path: "d/m", Mode: fs.ModeDevice | 0o660, Rdev: mkdev(8, 1)},
				File{Path: "d/n", Mode: fs.ModeNamedPipe | 0o600},
				File{Path: "d/s", Mode: fs.ModeSocket | 0o755, MTime: t0})
		},
	} {
		sm := smallManifest()
		f(sm)
		m[name] = mustMarshal(t, sm)
	}
	return m
}

func seedCorpus(t testing.TB) map[string]map[string][]byte {
	c := map[string]map[string][]byte{"FuzzUnmarshal": {}, "FuzzOpen": {}}
	for name, b := range seeds(t) {
		c["FuzzUnmarshal"][name] = b
		c["FuzzOpen"][name] = Sign(b, testKey)
	}
	return c
}

// TestFuzzCorpus keeps the committed seed corpus equal to what seeds
// makes; run with -update after changing the format or the fixtures.
func TestFuzzCorpus(t *testing.T) {
	for target, files := range seedCorpus(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, b := range files {
			path := filepath.Join(dir, "seed-"+name)
			want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is missing or stale (%v): run go test -run TestFuzzCorpus -update", path, err)
			}
		}
	}
}

// FuzzUnmarshal: Unmarshal never panics; what it accepts is valid and is
// the one encoding of its manifest.
func FuzzUnmarshal(f *testing.F) {
	for _, b := range seedCorpus(f)["FuzzUnmarshal"] {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Unmarshal(data)
		if err != nil {
			if m != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Unmarshal = %v, %v; want nil and ErrMalformed", m, err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Unmarshal accepted an invalid manifest: %v", err)
		}
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("re-encoding differs: the encoding is not canonical\n in %q\nout %q", data, b)
		}
		m2, err := Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatal("decode, encode, decode changed the manifest")
		}
	})
}

// FuzzOpen: Open never panics and accepts only what the key signed; its
// errors are ErrMalformed or ErrBadSignature.
func FuzzOpen(f *testing.F) {
	for _, b := range seedCorpus(f)["FuzzOpen"] {
		f.Add(b)
	}
	pub := testPub()
	f.Fuzz(func(t *testing.T, signed []byte) {
		m, body, err := Open(signed, pub)
		if err != nil {
			if m != nil || body != nil || !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Open = %v, %d bytes, %v", m, len(body), err)
			}
			return
		}
		if !bytes.Equal(Sign(body, testKey), signed) {
			t.Fatal("Open accepted an envelope that signing its body does not give")
		}
		m2, err := Unmarshal(body)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("Open's manifest differs from Unmarshal of its body (%v)", err)
		}
	})
}
