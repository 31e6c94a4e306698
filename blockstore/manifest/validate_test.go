package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
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
		{"named pipe", func(m *Manifest) { m.Files[link] = File{Path: "d/l", Mode: fs.ModeNamedPipe | 0o644} }, ""},
		{"socket", func(m *Manifest) { m.Files[link] = File{Path: "d/l", Mode: fs.ModeSocket | 0o755, MTime: t0} }, ""},
		{"block device", func(m *Manifest) { m.Files[link] = File{Path: "d/l", Mode: fs.ModeDevice | 0o660, Rdev: mkdev(8, 1)} }, ""},
		{"character device", func(m *Manifest) {
			m.Files[link] = File{Path: "d/l", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Rdev: mkdev(1, 3)}
		}, ""},
		{"device 0:0 (a whiteout)", func(m *Manifest) { m.Files[link] = File{Path: "d/l", Mode: fs.ModeDevice | fs.ModeCharDevice} }, ""},
		{"character-device bit alone", func(m *Manifest) { m.Files[link] = File{Path: "d/l", Mode: fs.ModeCharDevice | 0o644} },
			"only regular files, directories, symlinks, named pipes, sockets and devices"},
		{"irregular file", func(m *Manifest) { m.Files[link] = File{Path: "d/l", Mode: fs.ModeIrregular} }, "only regular files"},
		{"two types", func(m *Manifest) { m.Files[link] = File{Path: "d/l", Mode: fs.ModeNamedPipe | fs.ModeDevice} }, "only regular files"},
		{"named pipe with a size", func(m *Manifest) { m.Files[link] = File{Path: "d/l", Mode: fs.ModeNamedPipe, Size: 1} }, `file 2 "d/l": a named pipe has size 1`},
		{"device with a size", func(m *Manifest) { m.Files[link] = File{Path: "d/l", Mode: fs.ModeDevice, Size: 512} }, "a block device has size 512"},
		{"socket with blocks", func(m *Manifest) {
			m.Files[link] = File{Path: "d/l", Mode: fs.ModeSocket, Blocks: []blockstore.ID{{}}}
		}, "a socket lists 1 blocks"},
		{"device with a target", func(m *Manifest) { m.Files[link].Mode = fs.ModeDevice | fs.ModeCharDevice }, "a character device has a symlink target"},
		{"named pipe with a target", func(m *Manifest) { m.Files[link].Mode = fs.ModeNamedPipe }, "a named pipe has a symlink target"},
		{"device number on a regular file", func(m *Manifest) { m.Files[disk].Rdev = 1 }, `file 1 "d/disk.vmdk": a regular file has a device number (0x1)`},
		{"device number on a directory", func(m *Manifest) { m.Files[0].Rdev = 1 }, "a directory has a device number"},
		{"device number on a symlink", func(m *Manifest) { m.Files[link].Rdev = 1 }, "a symlink has a device number"},
		{"device number on a named pipe", func(m *Manifest) { m.Files[link] = File{Path: "d/l", Mode: fs.ModeNamedPipe, Rdev: 1} }, "a named pipe has a device number"},
		{"device number on a socket", func(m *Manifest) { m.Files[link] = File{Path: "d/l", Mode: fs.ModeSocket, Rdev: 1} }, "a socket has a device number"},
		{"atime", func(m *Manifest) { m.Files[disk].ATime = t0.Add(time.Hour) }, ""},
		{"atime out of range", func(m *Manifest) { m.Files[disk].ATime = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }, `file 1 "d/disk.vmdk": atime: 9999`},
		{"atime at the encoding's hole", func(m *Manifest) { m.Files[0].ATime = time.Unix(0, -1<<63) }, "atime: "},
		{"owners", func(m *Manifest) { m.Owners = true; m.Files[disk].UID, m.Files[disk].GID = 1000, 100 }, ""},
		{"owners, all root", func(m *Manifest) { m.Owners = true }, ""},
		{"uid without owners", func(m *Manifest) { m.Files[disk].UID = 1000 }, `file 1 "d/disk.vmdk": owner 1000:0 in a manifest without Owners`},
		{"gid without owners", func(m *Manifest) { m.Files[0].GID = 100 }, `file 0 "d": owner 0:100 in a manifest without Owners`},

		// Hard links. addLink appends a link "d/m" (after "d/l") of the
		// entry at path to.
		{"hard link", func(m *Manifest) { addLink(m, "d/disk.vmdk") }, ""},
		{"hard link of a symlink", func(m *Manifest) { addLink(m, "d/l") }, ""},
		{"hard link of a named pipe", func(m *Manifest) {
			m.Files[link] = File{Path: "d/l", Mode: fs.ModeNamedPipe | 0o600, MTime: t0}
			addLink(m, "d/l")
		}, ""},
		{"hard link of a device", func(m *Manifest) {
			m.Files[link] = File{Path: "d/l", Mode: fs.ModeDevice | 0o600, Rdev: mkdev(8, 16)}
			addLink(m, "d/l")
		}, ""},
		{"hard link with owners", func(m *Manifest) {
			m.Owners = true
			m.Files[disk].UID, m.Files[disk].GID = 1000, 100
			addLink(m, "d/disk.vmdk")
		}, ""},
		{"two hard links of one file", func(m *Manifest) {
			addLink(m, "d/disk.vmdk")
			m.Files = append(m.Files, hardLink("d/n", m.Files[disk]))
		}, ""},
		{"hard link in another directory", func(m *Manifest) {
			m.Files = append(m.Files, File{Path: "e", Mode: fs.ModeDir | 0o755}, hardLink("e/x", m.Files[disk]))
		}, ""},
		{"hard link with its own copy of the blocks", func(m *Manifest) {
			addLink(m, "d/disk.vmdk")
			m.Files[3].Blocks = slices.Clone(m.Files[3].Blocks)
		}, ""},
		{"hard link with its times in another zone", func(m *Manifest) {
			m.Files[disk].ATime = t0
			addLink(m, "d/disk.vmdk")
			zone := time.FixedZone("CET", 3600)
			m.Files[3].MTime, m.Files[3].ATime = t0.In(zone), t0.In(zone)
		}, ""},
		{"hard link, absolute", func(m *Manifest) { addLink(m, "d/disk.vmdk"); m.Files[3].Link = "/d/disk.vmdk" }, `file 3 "d/m": link "/d/disk.vmdk": absolute path`},
		{"hard link, unclean", func(m *Manifest) { addLink(m, "d/disk.vmdk"); m.Files[3].Link = "d/./disk.vmdk" }, `link "d/./disk.vmdk": path has a "." element`},
		{"hard link of nothing", func(m *Manifest) { addLink(m, "d/disk.vmdk"); m.Files[3].Link = "d/x" }, `file 3 "d/m": link "d/x" is not listed before the link`},
		{"hard link of itself", func(m *Manifest) { addLink(m, "d/disk.vmdk"); m.Files[3].Link = "d/m" }, `link "d/m" is not listed before the link`},
		{"hard link of a later entry", func(m *Manifest) {
			m.Files = slices.Insert(m.Files, disk, hardLink("d/a", m.Files[disk]))
		}, `file 1 "d/a": link "d/disk.vmdk" is not listed before the link`},
		{"hard link of a directory", func(m *Manifest) { addLink(m, "d") }, `file 3 "d/m": link "d" is a directory`},
		{"hard link of a hard link", func(m *Manifest) {
			addLink(m, "d/disk.vmdk")
			m.Files = append(m.Files, hardLink("d/n", m.Files[3]))
		}, `file 4 "d/n": link "d/m" is itself a hard link (of "d/disk.vmdk")`},
		{"hard link without its parent", func(m *Manifest) { m.Files = append(m.Files, hardLink("e/x", m.Files[disk])) }, `file 3 "e/x": parent directory "e" is not listed`},
		{"hard link, other mode", func(m *Manifest) { addLink(m, "d/disk.vmdk"); m.Files[3].Mode = 0o644 }, `hard link of "d/disk.vmdk" has mode -rw-r--r--, not -rw-r-----`},
		{"hard link, other type", func(m *Manifest) { addLink(m, "d/l"); m.Files[3].Mode = fs.ModeNamedPipe | 0o777 }, `hard link of "d/l" has mode prwxrwxrwx, not Lrwxrwxrwx`},
		{"hard link, other size", func(m *Manifest) { addLink(m, "d/disk.vmdk"); m.Files[3].Size-- }, "has size 20480, not 20481"},
		{"hard link, other mtime", func(m *Manifest) { addLink(m, "d/disk.vmdk"); m.Files[3].MTime = time.Time{} }, "has mtime 0001-01-01 00:00:00 +0000 UTC, not 2025-03-14"},
		{"hard link, other atime", func(m *Manifest) { addLink(m, "d/disk.vmdk"); m.Files[3].ATime = t0 }, "has atime 2025-03-14"},
		{"hard link, other uid", func(m *Manifest) { m.Owners = true; addLink(m, "d/disk.vmdk"); m.Files[3].UID = 1 }, "has owner 1:0, not 0:0"},
		{"hard link, other gid", func(m *Manifest) { m.Owners = true; addLink(m, "d/disk.vmdk"); m.Files[3].GID = 1 }, "has owner 0:1, not 0:0"},
		{"hard link, other device number", func(m *Manifest) {
			m.Files[link] = File{Path: "d/l", Mode: fs.ModeDevice, Rdev: 1}
			addLink(m, "d/l")
			m.Files[3].Rdev = 2
		}, "has device number 0x2, not 0x1"},
		{"hard link, other target", func(m *Manifest) { addLink(m, "d/l"); m.Files[3].Target = "x" }, `has target "x", not "disk.vmdk"`},
		{"hard link, other blocks", func(m *Manifest) {
			addLink(m, "d/disk.vmdk")
			m.Files[3].Blocks = slices.Clone(m.Files[3].Blocks)
			m.Files[3].Blocks[5] = testID(5)
		}, `hard link of "d/disk.vmdk" has other blocks`},
		{"hard link, blocks of another length", func(m *Manifest) { addLink(m, "d/disk.vmdk"); m.Files[3].Blocks = m.Files[3].Blocks[:5] }, "has other blocks"},
		{"hard link with blocks of a symlink", func(m *Manifest) { addLink(m, "d/l"); m.Files[3].Blocks = []blockstore.ID{{}} }, "has other blocks"},
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

// addLink appends to m (smallManifest, changed) a hard link "d/m" of the
// entry at path to.
func addLink(m *Manifest, to string) {
	f, ok := m.Lookup(to)
	if !ok {
		panic("addLink: no " + to)
	}
	m.Files = append(m.Files, hardLink("d/m", *f))
}

// Hard links' blocks do not count against MaxBlocks.
func TestValidateHardLinkBlocks(t *testing.T) {
	// 256 files of 65536 blocks that share one array: MaxBlocks in all.
	ids := make([]blockstore.ID, 1<<16)
	m := &Manifest{Kind: KindTemplate, Name: "n", BlockSize: 4096}
	for i := range MaxBlocks >> 16 {
		m.Files = append(m.Files, File{Path: fmt.Sprintf("f%03d", i), Size: 1 << 28, Blocks: ids})
	}
	for i := range 1000 {
		m.Files = append(m.Files, hardLink(fmt.Sprintf("l%04d", i), m.Files[i%256]))
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := m.Stats(), (Stats{Files: 256, HardLinks: 1000, Bytes: 1 << 36, Blocks: MaxBlocks, HoleBlocks: MaxBlocks}); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	m.Files = append(m.Files, File{Path: "z", Size: 1, Blocks: []blockstore.ID{{}}})
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), `file 1256 "z": more than MaxBlocks`) {
		t.Fatalf("Validate with MaxBlocks+1 blocks: %v", err)
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
