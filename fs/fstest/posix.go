//go:build linux

package fstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Check is one POSIX behaviour as a program sees it through the kernel.
// The adapters' tests run each check in a dvfs directory and in a
// directory of the local disk, and compare the outcomes.
type Check struct {
	Name string
	// Writes says the check changes what it runs in: it gets an empty
	// directory of its own (in a clone, or on the local disk). Else it
	// only reads, and gets a directory holding VMEntries(2): a template,
	// a clone made from it, or WriteTree's copy on the local disk.
	Writes bool
	// Changes says the check changes one file of VMEntries(2): it runs in
	// a clone made from it (after every check that only reads) and in a
	// copy of it on the local disk, not in a template. Each such check
	// changes a file no other one does.
	Changes bool
	// Run does it in dir and returns the outcome: "ok", the errno's name
	// (ENOENT), or what it read.
	Run func(dir string) string
}

// Differences lists the checks whose outcome in dvfs differs from the
// local disk on purpose, each with its reason; the README lists them.
var Differences = map[string]string{
	"open a device node": "the mount is nodev: a device node in a clone or template is an entry to keep, not a device to open (EACCES), " +
		"since whoever uploads a clone chooses its device numbers",
}

// POSIX returns the table of checks.
func POSIX() []Check {
	long := strings.Repeat("n", 256)
	longest := strings.Repeat("n", 255)
	return []Check{
		// Names and lookups.
		{Name: "getdents lists . and .. with their inode numbers", Run: dotEntries},
		{Name: "stat of a 256-byte name", Run: func(d string) string { return outcome(lstat(filepath.Join(d, long))) }},
		{Name: "stat of a missing 255-byte name", Run: func(d string) string { return outcome(lstat(filepath.Join(d, longest))) }},
		{Name: "a file as a path component", Run: func(d string) string { return outcome(lstat(filepath.Join(d, "disk.vmdk", "x"))) }},
		{Name: "open a directory for writing", Run: func(d string) string { return outcome(openClose(filepath.Join(d, "logs"), unix.O_WRONLY, 0)) }},
		{Name: "O_DIRECTORY on a file", Run: func(d string) string {
			return outcome(openClose(filepath.Join(d, "disk.vmdk"), unix.O_RDONLY|unix.O_DIRECTORY, 0))
		}},
		{Name: "readlink of a symlink", Run: func(d string) string {
			t, err := os.Readlink(filepath.Join(d, "current.vmdk"))
			if err != nil {
				return outcome(err)
			}
			return t
		}},
		{Name: "readlink of a file", Run: func(d string) string { _, err := os.Readlink(filepath.Join(d, "disk.vmdk")); return outcome(err) }},
		{Name: "open through a symlink with O_NOFOLLOW", Run: func(d string) string {
			return outcome(openClose(filepath.Join(d, "current.vmdk"), unix.O_RDONLY|unix.O_NOFOLLOW, 0))
		}},
		{Name: "a file and a directory have their types", Run: func(d string) string {
			var out []string
			for _, name := range []string{"disk.vmdk", "logs", "current.vmdk"} {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(d, name), &st); err != nil {
					return outcome(err)
				}
				out = append(out, typeName(st.Mode))
			}
			return strings.Join(out, " ")
		}},

		// Sparse files: big.vmdk has data in its first, a middle and its
		// last block, the rest holes.
		{Name: "st_blocks of a sparse file counts its data", Run: func(d string) string {
			return allocation(filepath.Join(d, "big.vmdk"), 2*BlockSize+BigSize%BlockSize, 3)
		}},
		{Name: "SEEK_DATA and SEEK_HOLE walk a sparse file", Run: func(d string) string { return dataExtents(filepath.Join(d, "big.vmdk")) }},
		{Name: "SEEK_DATA and SEEK_HOLE at the end of a file", Run: func(d string) string {
			fd, err := unix.Open(filepath.Join(d, "big.vmdk"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return outcome(err)
			}
			defer unix.Close(fd)
			_, e1 := unix.Seek(fd, BigSize, unix.SEEK_DATA)
			_, e2 := unix.Seek(fd, BigSize, unix.SEEK_HOLE)
			at, e3 := unix.Seek(fd, BigSize-1, unix.SEEK_HOLE)
			return fmt.Sprintf("data %s, hole %s, hole from the last byte %s at %d", outcome(e1), outcome(e2), outcome(e3), at)
		}},
		{Name: "a file written in a hole of a new sparse file", Writes: true, Run: func(d string) string {
			p := filepath.Join(d, "f")
			out := steps(func() error { return touch(d, "f") }, func() error { return unix.Truncate(p, 4<<20) },
				func() error { return writeAt(p, make4k(), 1<<20) }, func() error { return writeAt(p, make4k(), 2<<20+8192) })
			return out + "; " + dataExtents(p) + "; " + allocation(p, 8192, 2)
		}},

		{Name: "a hole punched in data of the base", Changes: true, Run: func(d string) string {
			p := filepath.Join(d, "big.vmdk")
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				return outcome(err)
			}
			err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, BigSize/BlockSize/2*BlockSize, BlockSize)
			f.Close()
			if err != nil {
				return outcome(err)
			}
			return dataExtents(p) + "; " + allocation(p, BlockSize+BigSize%BlockSize, 2)
		}},

		// Changes and their errors.
		{Name: "create a 256-byte name", Writes: true, Run: func(d string) string {
			return outcome(openClose(filepath.Join(d, long), unix.O_CREAT|unix.O_WRONLY, 0o644))
		}},
		{Name: "create a 255-byte name", Writes: true, Run: func(d string) string {
			return outcome(openClose(filepath.Join(d, longest), unix.O_CREAT|unix.O_WRONLY, 0o644))
		}},
		{Name: "mkdir of a 256-byte name", Writes: true, Run: func(d string) string { return outcome(os.Mkdir(filepath.Join(d, long), 0o755)) }},
		{Name: "mkdir over an existing name", Writes: true, Run: func(d string) string {
			return steps(func() error { return touch(d, "f") }, func() error { return os.Mkdir(filepath.Join(d, "f"), 0o755) })
		}},
		{Name: "O_CREAT|O_EXCL of an existing file", Writes: true, Run: func(d string) string {
			return steps(func() error { return touch(d, "f") },
				func() error { return openClose(filepath.Join(d, "f"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644) })
		}},
		{Name: "rmdir of a non-empty directory", Writes: true, Run: func(d string) string {
			return steps(func() error { return os.Mkdir(filepath.Join(d, "a"), 0o755) }, func() error { return touch(d, "a/f") },
				func() error { return unix.Rmdir(filepath.Join(d, "a")) })
		}},
		{Name: "rmdir of a file", Writes: true, Run: func(d string) string {
			return steps(func() error { return touch(d, "f") }, func() error { return unix.Rmdir(filepath.Join(d, "f")) })
		}},
		{Name: "unlink of a directory", Writes: true, Run: func(d string) string {
			return steps(func() error { return os.Mkdir(filepath.Join(d, "a"), 0o755) }, func() error { return unix.Unlink(filepath.Join(d, "a")) })
		}},
		{Name: "rename a file over a directory", Writes: true, Run: func(d string) string {
			return steps(func() error { return touch(d, "f") }, func() error { return os.Mkdir(filepath.Join(d, "a"), 0o755) },
				func() error { return unix.Rename(filepath.Join(d, "f"), filepath.Join(d, "a")) })
		}},
		{Name: "rename a directory over a file", Writes: true, Run: func(d string) string {
			return steps(func() error { return touch(d, "f") }, func() error { return os.Mkdir(filepath.Join(d, "a"), 0o755) },
				func() error { return unix.Rename(filepath.Join(d, "a"), filepath.Join(d, "f")) })
		}},
		{Name: "rename a directory over a non-empty one", Writes: true, Run: func(d string) string {
			return steps(func() error { return os.Mkdir(filepath.Join(d, "a"), 0o755) }, func() error { return os.Mkdir(filepath.Join(d, "b"), 0o755) },
				func() error { return touch(d, "b/f") }, func() error { return unix.Rename(filepath.Join(d, "a"), filepath.Join(d, "b")) })
		}},
		{Name: "rename a directory over an empty one", Writes: true, Run: func(d string) string {
			out := steps(func() error { return os.Mkdir(filepath.Join(d, "a"), 0o755) }, func() error { return touch(d, "a/f") },
				func() error { return os.Mkdir(filepath.Join(d, "b"), 0o755) }, func() error { return unix.Rename(filepath.Join(d, "a"), filepath.Join(d, "b")) })
			return out + " " + strings.Join(names(d), ",") + " " + strings.Join(names(filepath.Join(d, "b")), ",")
		}},
		{Name: "rename a directory into itself", Writes: true, Run: func(d string) string {
			return steps(func() error { return os.Mkdir(filepath.Join(d, "a"), 0o755) },
				func() error { return unix.Rename(filepath.Join(d, "a"), filepath.Join(d, "a", "b")) })
		}},
		{Name: "rename a name onto itself", Writes: true, Run: func(d string) string {
			out := steps(func() error { return touch(d, "f") }, func() error { return unix.Rename(filepath.Join(d, "f"), filepath.Join(d, "f")) })
			return out + " " + strings.Join(names(d), ",")
		}},
		{Name: "a symlink loop", Writes: true, Run: func(d string) string {
			return steps(func() error { return os.Symlink("b", filepath.Join(d, "a")) }, func() error { return os.Symlink("a", filepath.Join(d, "b")) },
				func() error { return openClose(filepath.Join(d, "a"), unix.O_RDONLY, 0) })
		}},
		{Name: "truncate of a directory", Writes: true, Run: func(d string) string {
			return steps(func() error { return os.Mkdir(filepath.Join(d, "a"), 0o755) }, func() error { return unix.Truncate(filepath.Join(d, "a"), 0) })
		}},
		{Name: "mtime past 2038, with nanoseconds", Writes: true, Run: func(d string) string {
			mt := unix.Timespec{Sec: 1 << 32, Nsec: 123456789} // 2106
			out := steps(func() error { return touch(d, "f") },
				func() error {
					return unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(d, "f"), []unix.Timespec{{Nsec: unix.UTIME_OMIT}, mt}, 0)
				})
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(d, "f"), &st); err != nil {
				return out + "; " + outcome(err)
			}
			return fmt.Sprintf("%s; mtime %d.%09d", out, st.Mtim.Sec, st.Mtim.Nsec)
		}},
		{Name: "atime and mtime set apart, with nanoseconds, past 2038", Writes: true, Run: func(d string) string {
			at := unix.Timespec{Sec: 1<<32 + 5, Nsec: 1}
			mt := unix.Timespec{Sec: 1 << 31, Nsec: 999999999}
			out := steps(func() error { return touch(d, "f") },
				func() error {
					return unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(d, "f"), []unix.Timespec{at, mt}, 0)
				})
			return out + "; " + times(filepath.Join(d, "f"))
		}},

		// Owners.
		{Name: "chown and chgrp stick", Writes: true, Run: func(d string) string {
			p := filepath.Join(d, "f")
			return steps(func() error { return touch(d, "f") }, func() error { return os.Chown(p, 1234, -1) },
				func() error { return os.Chown(p, -1, 5678) }) + "; " + owner(p)
		}},
		{Name: "chown of a symlink itself", Writes: true, Run: func(d string) string {
			p := filepath.Join(d, "l")
			return steps(func() error { return os.Symlink("nowhere", p) }, func() error { return os.Lchown(p, 1234, 5678) }) + "; " + owner(p)
		}},
		{Name: "chown clears set-user-ID and set-group-ID", Writes: true, Run: func(d string) string {
			p := filepath.Join(d, "f")
			return steps(func() error { return touch(d, "f") }, func() error { return unix.Chmod(p, 0o6755) },
				func() error { return os.Chown(p, 1234, 5678) }) + "; " + owner(p)
		}},
		{Name: "a setgid directory gives its group to what is made in it", Writes: true, Run: func(d string) string {
			a := filepath.Join(d, "a")
			out := steps(func() error { return os.Mkdir(a, 0o755) }, func() error { return os.Chown(a, -1, 5678) },
				func() error { return unix.Chmod(a, 0o2775) }, func() error { return touch(a, "f") },
				func() error { return os.Mkdir(filepath.Join(a, "b"), 0o755) })
			return out + "; f " + owner(filepath.Join(a, "f")) + "; b " + owner(filepath.Join(a, "b"))
		}},
		{Name: "owner and group of an entry", Run: func(d string) string {
			// Modes differ in a template, which drops write bits.
			return ids(filepath.Join(d, "owned.txt")) + ", " + ids(filepath.Join(d, "disk.vmdk"))
		}},
		{Name: "atime and mtime of an entry", Run: func(d string) string { return times(filepath.Join(d, "owned.txt")) }},

		// Hard links.
		{Name: "two names of one file", Run: func(d string) string {
			return links(filepath.Join(d, "disk.vmdk"), filepath.Join(d, "logs", "disk.vmdk"))
		}},
		{Name: "link, write through the new name, unlink the old", Writes: true, Run: func(d string) string {
			f, g := filepath.Join(d, "f"), filepath.Join(d, "g")
			out := steps(func() error { return touch(d, "f") }, func() error { return os.Link(f, g) },
				func() error { return writeAt(g, []byte("through g"), 0) })
			out += "; " + links(f, g)
			b, err := os.ReadFile(f)
			out += "; f reads " + strconv.Quote(string(b)) + " " + outcome(err)
			out += "; " + steps(func() error { return unix.Unlink(f) }) + "; " + links(g)
			b, err = os.ReadFile(g)
			return out + "; g reads " + strconv.Quote(string(b)) + " " + outcome(err)
		}},
		{Name: "link into another directory, rename one name onto the other", Writes: true, Run: func(d string) string {
			f, g := filepath.Join(d, "f"), filepath.Join(d, "a", "g")
			out := steps(func() error { return touch(d, "f") }, func() error { return os.Mkdir(filepath.Join(d, "a"), 0o755) },
				func() error { return os.Link(f, g) }, func() error { return unix.Rename(f, g) })
			return out + "; " + links(f, g)
		}},
		{Name: "link over an existing name", Writes: true, Run: func(d string) string {
			return steps(func() error { return touch(d, "f") }, func() error { return touch(d, "g") },
				func() error { return os.Link(filepath.Join(d, "f"), filepath.Join(d, "g")) })
		}},
		{Name: "link to a directory", Writes: true, Run: func(d string) string {
			return steps(func() error { return os.Mkdir(filepath.Join(d, "a"), 0o755) },
				func() error { return os.Link(filepath.Join(d, "a"), filepath.Join(d, "b")) })
		}},
		{Name: "link of a symlink", Writes: true, Run: func(d string) string {
			l, m := filepath.Join(d, "l"), filepath.Join(d, "m")
			out := steps(func() error { return os.Symlink("t", l) }, func() error { return unix.Linkat(unix.AT_FDCWD, l, unix.AT_FDCWD, m, 0) })
			t, err := os.Readlink(m)
			return out + "; " + links(l, m) + "; m -> " + t + " " + outcome(err)
		}},
		{Name: "unlink one name of a file of the base", Changes: true, Run: func(d string) string {
			out := steps(func() error { return unix.Unlink(filepath.Join(d, "logs", "disk.vmdk")) }) + "; " + links(filepath.Join(d, "disk.vmdk"))
			b, err := os.ReadFile(filepath.Join(d, "disk.vmdk"))
			return out + fmt.Sprintf("; %d bytes, %s", len(b), outcome(err))
		}},

		// FIFOs, sockets and device nodes.
		{Name: "types of a FIFO, a socket and a device node", Run: func(d string) string {
			var out []string
			for _, name := range []string{"serial.fifo", "monitor.sock", "null"} {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(d, name), &st); err != nil {
					return outcome(err)
				}
				out = append(out, fmt.Sprintf("%s %d:%d", typeName(st.Mode), unix.Major(st.Rdev), unix.Minor(st.Rdev)))
			}
			return strings.Join(out, ", ")
		}},
		{Name: "bytes through a FIFO", Run: func(d string) string { return throughFIFO(filepath.Join(d, "serial.fifo")) }},
		{Name: "open a device node", Run: func(d string) string { return outcome(openClose(filepath.Join(d, "null"), unix.O_RDONLY, 0)) }},
		{Name: "mkfifo, then bytes through it", Writes: true, Run: func(d string) string {
			p := filepath.Join(d, "fifo")
			return steps(func() error { return unix.Mkfifo(p, 0o600) }) + "; " + throughFIFO(p) + "; " + owner(p)
		}},
		{Name: "bind a Unix socket, connect to it", Writes: true, Run: bindConnect},
		{Name: "mknod a character device", Writes: true, Run: func(d string) string {
			p := filepath.Join(d, "null")
			out := steps(func() error { return unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))) })
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return out + "; " + outcome(err)
			}
			return out + fmt.Sprintf("; %s %d:%d %s", typeName(st.Mode), unix.Major(st.Rdev), unix.Minor(st.Rdev), owner(p))
		}},
		{Name: "unlink a FIFO", Writes: true, Run: func(d string) string {
			p := filepath.Join(d, "fifo")
			return steps(func() error { return unix.Mkfifo(p, 0o600) }, func() error { return unix.Unlink(p) }) + " " + strings.Join(names(d), ",")
		}},

		{Name: "an open file unlinked: its name is gone, its data stays until close", Writes: true, Run: unlinkOpen},

		{Name: "getdents of a new directory", Writes: true, Run: func(d string) string {
			return steps(func() error { return os.Mkdir(filepath.Join(d, "a"), 0o755) }, func() error { return touch(d, "a/f") }) +
				" " + dotEntries(d)
		}},
	}
}

// unlinkOpen writes a file, unlinks it while open, and tells what the
// directory lists, what the open file reads after another write, and its
// link count.
func unlinkOpen(d string) string {
	p := filepath.Join(d, "f")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return outcome(err)
	}
	defer f.Close()
	out := steps(func() error { _, err := f.WriteAt([]byte("abc"), 0); return err }, func() error { return unix.Unlink(p) },
		func() error { _, err := f.WriteAt([]byte("def"), 3); return err })
	b := make([]byte, 10)
	n, _ := f.ReadAt(b, 0)
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return out + "; " + outcome(err)
	}
	return fmt.Sprintf("%s; listing [%s]; reads %q; nlink %d", out, strings.Join(names(d), ","), b[:n], st.Nlink)
}

// owner says who owns path (not following a symlink), and its mode.
func owner(path string) string {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return outcome(err)
	}
	return fmt.Sprintf("%d:%d %#o", st.Uid, st.Gid, st.Mode&0o7777)
}

// ids says who owns path (not following a symlink).
func ids(path string) string {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return outcome(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

// times gives path's atime and mtime with nanoseconds.
func times(path string) string {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return outcome(err)
	}
	return fmt.Sprintf("atime %d.%09d mtime %d.%09d", st.Atim.Sec, st.Atim.Nsec, st.Mtim.Sec, st.Mtim.Nsec)
}

// links says whether paths are one inode, and its link count.
func links(paths ...string) string {
	var first unix.Stat_t
	out := ""
	for i, p := range paths {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return outcome(err)
		}
		if i == 0 {
			first = st
			out = fmt.Sprintf("%d links", st.Nlink)
		} else if st.Ino != first.Ino || st.Nlink != first.Nlink {
			return fmt.Sprintf("%s: inode %d with %d links, not the first's %d with %d", filepath.Base(p), st.Ino, st.Nlink, first.Ino, first.Nlink)
		}
	}
	if len(paths) > 1 {
		out = "one inode, " + out
	}
	return out
}

// throughFIFO opens the FIFO at path for reading and writing (which does
// not wait for a peer), writes a few bytes and reads them back.
func throughFIFO(path string) string {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return outcome(err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte("ping")); err != nil {
		return "write " + outcome(err)
	}
	buf := make([]byte, 16)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return "read " + outcome(err)
	}
	return "read " + strconv.Quote(string(buf[:n]))
}

// bindConnect binds a Unix socket in d (through /proc/self/fd, so the
// path fits in sun_path however deep d is), connects to it and sends a
// byte across.
func bindConnect(d string) string {
	dfd, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return outcome(err)
	}
	defer unix.Close(dfd)
	addr := &unix.SockaddrUnix{Name: fmt.Sprintf("/proc/self/fd/%d/sock", dfd)}
	ln, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return outcome(err)
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, addr); err != nil {
		return "bind " + outcome(err)
	}
	if err := unix.Listen(ln, 1); err != nil {
		return "listen " + outcome(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(d, "sock"), &st); err != nil {
		return "stat " + outcome(err)
	}
	c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return outcome(err)
	}
	defer unix.Close(c)
	if err := unix.Connect(c, addr); err != nil {
		return typeName(st.Mode) + "; connect " + outcome(err)
	}
	a, _, err := unix.Accept(ln)
	if err != nil {
		return "accept " + outcome(err)
	}
	defer unix.Close(a)
	if _, err := unix.Write(c, []byte("x")); err != nil {
		return "write " + outcome(err)
	}
	buf := make([]byte, 4)
	n, err := unix.Read(a, buf)
	if err != nil {
		return "read " + outcome(err)
	}
	return fmt.Sprintf("%s; read %q; %s", typeName(st.Mode), buf[:n], owner(filepath.Join(d, "sock")))
}

// allocation says whether path's st_blocks counts its data bytes (within
// 4 KiB for each of its extents: a local disk allocates in blocks of its
// own), its whole size, or something else.
func allocation(path string, data int64, extents int64) string {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return outcome(err)
	}
	switch got := st.Blocks * 512; {
	case got >= data && got <= data+extents*4096:
		return "st_blocks counts the data"
	case got >= st.Size:
		return "st_blocks counts the whole size"
	default:
		return fmt.Sprintf("st_blocks %d for %d bytes of data", st.Blocks, data)
	}
}

// dataExtents walks path with SEEK_DATA and SEEK_HOLE and lists its data,
// each extent widened to whole blocks of BlockSize (within the size): a
// local disk finds data in its own, smaller, blocks.
func dataExtents(path string) string {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return outcome(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return outcome(err)
	}
	var out []string
	for pos := int64(0); pos < st.Size; {
		d, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break
		}
		if err != nil {
			return outcome(err)
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return outcome(err)
		}
		start, end := d/BlockSize*BlockSize, min((h+BlockSize-1)/BlockSize*BlockSize, st.Size)
		if n := len(out); n > 0 && strings.HasSuffix(out[n-1], fmt.Sprintf("-%d", start)) {
			out[n-1] = strings.TrimSuffix(out[n-1], fmt.Sprintf("-%d", start)) + fmt.Sprintf("-%d", end)
		} else {
			out = append(out, fmt.Sprintf("%d-%d", start, end))
		}
		pos = h
	}
	return "data " + strings.Join(out, " ")
}

func writeAt(path string, p []byte, off int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(p, off); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// make4k returns 4 KiB that are not zeros.
func make4k() []byte {
	p := make([]byte, 4096)
	Fill(p, 1, 2)
	return p
}

// outcome names err's errno, or "ok".
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	return err.Error()
}

// steps runs fns in order and names the outcome of the first that fails,
// with its step, or "ok".
func steps(fns ...func() error) string {
	for i, fn := range fns {
		if err := fn(); err != nil {
			if i == len(fns)-1 {
				return outcome(err)
			}
			return "step " + string(rune('1'+i)) + ": " + outcome(err)
		}
	}
	return "ok"
}

func lstat(p string) error {
	var st unix.Stat_t
	return unix.Lstat(p, &st)
}

func touch(dir, name string) error {
	return openClose(filepath.Join(dir, name), unix.O_CREAT|unix.O_WRONLY, 0o644)
}

func openClose(p string, flags int, mode uint32) error {
	fd, err := unix.Open(p, flags|unix.O_CLOEXEC, mode)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// names lists dir's entries (without . and ..), sorted.
func names(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return []string{outcome(err)}
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	}
	return "unknown"
}

// dotEntries reads the directory d/logs (or d/a, which a writing check
// made) with getdents(2), which, unlike os.ReadDir, shows . and ..: it
// returns the names in order of name and whether . and .. carry the
// inode numbers stat gives the directory and its parent.
func dotEntries(d string) string {
	dir := filepath.Join(d, "logs")
	if _, err := os.Lstat(dir); err != nil {
		dir = filepath.Join(d, "a")
	}
	ents, err := getdents(dir)
	if err != nil {
		return outcome(err)
	}
	var self, up unix.Stat_t
	if err := unix.Stat(dir, &self); err != nil {
		return outcome(err)
	}
	if err := unix.Stat(filepath.Dir(dir), &up); err != nil {
		return outcome(err)
	}
	var out []string
	inos := "inode numbers right"
	for name, ino := range ents {
		out = append(out, name)
		if name == "." && ino != self.Ino || name == ".." && ino != up.Ino {
			inos = "inode number of " + name + " wrong"
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ") + "; " + inos
}

// getdents returns the entries of dir by name, with their inode numbers,
// as the kernel lists them (. and .. included).
func getdents(dir string) (map[string]uint64, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	out := map[string]uint64{}
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8,
		// then the name, NUL-terminated.
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			if reclen < 19 || reclen > len(b) {
				return nil, errors.New("getdents: bad record length")
			}
			name := b[19:reclen]
			if i := slices.Index(name, 0); i >= 0 {
				name = name[:i]
			}
			out[string(name)] = binary.NativeEndian.Uint64(b)
			b = b[reclen:]
		}
	}
}

// WriteTree writes entries under dir on the local disk, holes left as
// holes: the reference the read-only checks run in. Owners, device nodes
// and set times need root.
func WriteTree(dir string, entries []Entry) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	block := make([]byte, BlockSize)
	for _, e := range entries {
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		switch {
		case e.Link != "":
			if err := os.Link(filepath.Join(dir, filepath.FromSlash(e.Link)), p); err != nil {
				return err
			}
			continue
		case e.Mode.IsDir():
			if err := os.MkdirAll(p, e.Mode.Perm()); err != nil {
				return err
			}
		case e.Mode&os.ModeSymlink != 0:
			if err := os.Symlink(e.Target, p); err != nil {
				return err
			}
		case e.Mode.Type() != 0:
			if err := unix.Mknod(p, unixType(e.Mode)|uint32(e.Mode.Perm()), int(e.Rdev)); err != nil {
				return err
			}
		default:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, e.Mode.Perm())
			if err != nil {
				return err
			}
			for i := int64(0); i*BlockSize < e.Size && e.Content != nil; i++ {
				clear(block)
				if !e.Content(i, block) {
					continue
				}
				n := min(e.Size-i*BlockSize, BlockSize)
				if _, err := f.WriteAt(block[:n], i*BlockSize); err != nil {
					f.Close()
					return err
				}
			}
			if err := f.Truncate(e.Size); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		}
		if e.UID != 0 || e.GID != 0 {
			if err := os.Lchown(p, int(e.UID), int(e.GID)); err != nil {
				return err
			}
			if e.Mode.Type() != os.ModeSymlink {
				if err := unix.Chmod(p, uint32(e.Mode.Perm())); err != nil {
					return err
				}
			}
		}
		if !e.ATime.IsZero() {
			ts := []unix.Timespec{unix.NsecToTimespec(e.ATime.UnixNano()), unix.NsecToTimespec(EntryMTime(e.Path).UnixNano())}
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
		}
	}
	return nil
}

// unixType is st_mode's type bits for a FIFO, socket or device mode.
func unixType(m os.FileMode) uint32 {
	switch m.Type() {
	case os.ModeNamedPipe:
		return unix.S_IFIFO
	case os.ModeSocket:
		return unix.S_IFSOCK
	case os.ModeDevice:
		return unix.S_IFBLK
	case os.ModeDevice | os.ModeCharDevice:
		return unix.S_IFCHR
	}
	return unix.S_IFREG
}
