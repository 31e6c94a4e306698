package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

func TestValidate(t *testing.T) {
	// Each case changes smallManifest (files "d", "d/disk.vmdk" of 6
	// blocks of 4 KiB, "d/l" -> "disk.vmdk"); want is in the error, ""
	// for a valid manifest.
	const disk, link = 1, 2
	tests := []struct {
		name   string
		change func(m *Manifest)
		want   string
	}{
		{"valid", func(m *Manifest) {}, ""},
		{"no kind", func(m *Manifest) { m.Kind = 0 }, "unknown kind 0"},
		{"unknown kind", func(m *Manifest) { m.Kind = 7 }, "unknown kind 7"},
		{"clone", func(m *Manifest) { m.Kind = KindClone }, ""},
		{"bad name", func(m *Manifest) { m.Name = "a b" }, `template name "a b" holds ' '`},
		{"uncommitted with a parent", func(m *Manifest) { m.Version, m.Parent = 0, 5 }, ""},
		{"parent not before version", func(m *Manifest) { m.Version, m.Parent = 3, 3 }, "parent version 3 is not before version 3"},
		{"zero created", func(m *Manifest) { m.Created = time.Time{} }, ""},
		{"created after 2262", func(m *Manifest) { m.Created = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }, "created: 2300-01-01"},
		{"created before 1678", func(m *Manifest) { m.Created = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) }, "outside the years 1678 to 2262"},
		{"created at the encoding's hole", func(m *Manifest) { m.Created = time.Unix(0, -1<<63) }, "outside the years"},
		{"block size 0", func(m *Manifest) { m.BlockSize = 0 }, "block size 0 is not a power of two from 4096 to 4194304"},
		{"block size not a power of two", func(m *Manifest) { m.BlockSize = 6144 }, "block size 6144"},
		{"block size too small", func(m *Manifest) { m.BlockSize = 2048 }, "block size 2048"},
		{"block size too big", func(m *Manifest) { m.BlockSize = 8 << 20 }, "block size 8388608"},
		{"block size max", func(m *Manifest) { m.BlockSize = blockstore.MaxBlockSize; m.Files[disk].Size = 5*(4<<20) + 1 }, ""},
		{"empty path", func(m *Manifest) { m.Files[0].Path = "" }, `file 0 "": empty path`},
		{"absolute path", func(m *Manifest) { m.Files[0].Path = "/d" }, "absolute path"},
		{"doubled slash", func(m *Manifest) { m.Files[disk].Path = "d//disk.vmdk" }, "empty path element"},
		{"trailing slash", func(m *Manifest) { m.Files[0].Path = "d/" }, "empty path element"},
		{"dot element", func(m *Manifest) { m.Files[disk].Path = "d/./disk.vmdk" }, `path has a "." element`},
		{"dot path", func(m *Manifest) { m.Files[0].Path = "." }, `path has a "." element`},
		{"dot-dot element", func(m *Manifest) { m.Files[link].Path = "d/.." }, `path has a ".." element`},
		{"dots in a name", func(m *Manifest) { m.Files[link].Path = "d/l.." }, ""},
		{"NUL in path", func(m *Manifest) { m.Files[link].Path = "d/l\x00" }, "NUL"},
		{"path too long", func(m *Manifest) { m.Files[link].Path = "d/" + strings.Repeat("a/", 2047) + "l" }, "path of 4097 bytes"},
		{"element too long", func(m *Manifest) { m.Files[link].Path = "d/" + strings.Repeat("l", 256) }, "path element of 256 bytes"},
		{"unsorted", func(m *Manifest) { m.Files[disk], m.Files[link] = m.Files[link], m.Files[disk] }, `file 2 "d/disk.vmdk": not after file 1 "d/l"`},
		{"duplicate", func(m *Manifest) { m.Files[link].Path = "d/disk.vmdk" }, "not after file 1"},
		{"parent missing", func(m *Manifest) { m.Files[0].Path = "c" }, `file 1 "d/disk.vmdk": parent directory "d" is not listed`},
		{"parent not a directory", func(m *Manifest) { m.Files[0].Mode = 0o644 }, `parent "d" is not a directory`},
		{"parent is a symlink", func(m *Manifest) {
			m.Files[0] = File{Path: "d", Mode: fs.ModeSymlink | 0o777, Target: "e"}
		}, `parent "d" is not a directory`},
		{"named pipe", func(m *Manifest) { m.Files[link].Mode = fs.ModeNamedPipe | 0o644; m.Files[link].Target = "" }, "only regular files, directories and symlinks"},
		{"device", func(m *Manifest) { m.Files[link].Mode = fs.ModeDevice | 0o644; m.Files[link].Target = "" }, "only regular files"},
		{"socket", func(m *Manifest) { m.Files[link].Mode = fs.ModeSocket | 0o644; m.Files[link].Target = "" }, "only regular files"},
		{"append-only bit", func(m *Manifest) { m.Files[disk].Mode |= fs.ModeAppend }, "bits other than type and permissions"},
		{"setuid", func(m *Manifest) { m.Files[disk].Mode |= fs.ModeSetuid | fs.ModeSetgid }, ""},
		{"negative size", func(m *Manifest) { m.Files[0].Size = -1 }, "negative size -1"},
		{"directory size", func(m *Manifest) { m.Files[0].Size = 4096 }, ""},
		{"too few blocks", func(m *Manifest) { m.Files[disk].Size += 4096 }, "6 blocks for 24577 bytes, want 7"},
		{"too many blocks", func(m *Manifest) { m.Files[disk].Size = 4096 * 5 }, "6 blocks for 20480 bytes, want 5"},
		{"empty file with blocks", func(m *Manifest) { m.Files[disk].Size = 0 }, "6 blocks for 0 bytes, want 0"},
		{"directory with blocks", func(m *Manifest) { m.Files[0].Blocks = []blockstore.ID{{}} }, "a directory lists 1 blocks"},
		{"symlink with blocks", func(m *Manifest) { m.Files[link].Blocks = []blockstore.ID{testID(1)} }, "a symlink lists 1 blocks"},
		{"symlink without target", func(m *Manifest) { m.Files[link].Target = "" }, "symlink without a target"},
		{"absolute symlink", func(m *Manifest) { m.Files[link].Target = "/etc/passwd" }, ""},
		{"NUL in target", func(m *Manifest) { m.Files[link].Target = "a\x00b" }, "symlink target holds a NUL"},
		{"target too long", func(m *Manifest) { m.Files[link].Target = strings.Repeat("x", MaxTargetLen+1) }, "symlink target of 4097 bytes"},
		{"file with target", func(m *Manifest) { m.Files[disk].Target = "x" }, "a regular file has a symlink target"},
		{"directory with target", func(m *Manifest) { m.Files[0].Target = "x" }, "a directory has a symlink target"},
		{"mtime out of range", func(m *Manifest) { m.Files[link].MTime = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }, `file 2 "d/l": mtime: 9999`},
		{"too many files", func(m *Manifest) { m.Files = make([]File, MaxFiles+1) }, "1048577 files, more than MaxFiles"},
		{"too many blocks in all", func(m *Manifest) {
			// 257 files of 65536 blocks that share one array.
			ids := make([]blockstore.ID, 1<<16)
			m.Files = m.Files[:0]
			for i := 0; i <= MaxBlocks>>16; i++ {
				m.Files = append(m.Files, File{Path: fmt.Sprintf("f%03d", i), Size: 1 << 28, Blocks: ids})
			}
		}, `file 256 "f256": more than MaxBlocks (16777216) block IDs in all`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := smallManifest()
			tt.change(m)
			err := m.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				// Whatever validates encodes and decodes.
				if _, err := Unmarshal(mustMarshal(t, m)); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed, want an error saying %q", tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want string // in the error; "" for valid
	}{
		{"win11", ""},
		{"Ubuntu-24.04_LTS", ""},
		{"a", ""},
		{"9lives", ""},
		{"_x", ""},
		{strings.Repeat("a", 128), ""},
		{"", "empty template name"},
		{strings.Repeat("a", 129), "template name of 129 bytes, more than 128"},
		{".hidden", `starts with '.'`},
		{"-rf", `starts with '-'`},
		{"win11@3", "holds '@' (NAME@VERSION"},
		{"a/b", `holds '/'`},
		{"a b", `holds ' '`},
		{"caf\u00e9", "holds a non-ASCII byte 0xc3"},
		{"a\x00", `holds '\x00'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidName(tt.name)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("ValidName: %v", err)
			case tt.want == "":
			case err == nil:
				t.Fatalf("ValidName passed, want an error saying %q", tt.want)
			case !errors.Is(err, ErrInvalid):
				t.Errorf("error %q does not wrap ErrInvalid", err)
			case !strings.Contains(err.Error(), tt.want):
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}
