//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// workspace makes a scratch directory under dir, named for the benchmark,
// and builds the binary under test into it; cleanup removes it all.
func workspace(dir, name string) (work, bin string, cleanup func(), err error) {
	work, err = os.MkdirTemp(dir, "dvfs-bench-"+name)
	if err != nil {
		return "", "", nil, err
	}
	cleanup = func() { os.RemoveAll(work) }
	if bin, err = buildDvfs(work); err != nil {
		cleanup()
		return "", "", nil, err
	}
	return work, bin, cleanup, nil
}

// buildDvfs builds the binary under test into dir.
func buildDvfs(dir string) (string, error) {
	bin := filepath.Join(dir, "dvfs")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/dvfs").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// dropCaches writes dirty pages back and empties the page cache, so each
// measurement starts cold.
func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}

// server is a running `dvfs serve`.
type server struct {
	cmd   *exec.Cmd
	url   string
	token string

	mu  sync.Mutex
	log bytes.Buffer
}

var servingRE = regexp.MustCompile(`msg=serving url=(\S+)`)

func startServer(bin, data string, extra ...string) (*server, error) {
	s := &server{cmd: exec.Command(bin, append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0"}, extra...)...)}
	pr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		s.log.WriteString(sc.Text() + "\n")
		if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
			s.url = m[1]
			break
		}
	}
	if s.url == "" {
		return nil, fmt.Errorf("server did not start:\n%s", s.log.String())
	}
	go func() {
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		return nil, err
	}
	s.token = strings.TrimSpace(string(tok))
	return s, nil
}

// waitLog waits for a log line matching re written after the call began
// (polling the log) and returns when it was seen.
func (s *server) waitLog(re *regexp.Regexp, timeout time.Duration) (time.Time, error) {
	s.mu.Lock()
	from := s.log.Len()
	s.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		found := re.Match(s.log.Bytes()[from:])
		s.mu.Unlock()
		if found {
			return time.Now(), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("server log: no line matching %s in %s", re, timeout)
}

// procStatus returns a field of /proc/PID/status (a size in kB) in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s for pid %d", field, pid)
}

// memWatch samples a process's anonymous resident memory (heap, stacks:
// what the process itself allocated, unlike VmHWM, which also counts the
// pages of files it maps) until stopped, and returns the peak.
func memWatch(pid int) (stop func() int64) {
	done := make(chan struct{})
	peak := make(chan int64)
	go func() {
		var max int64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := procStatus(pid, "RssAnon"); err == nil && v > max {
				max = v
			}
			select {
			case <-t.C:
			case <-done:
				peak <- max
				return
			}
		}
	}()
	return func() int64 { close(done); return <-peak }
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
}

// serveTemplate starts a server on data, publishes the directory tpl as
// template name and, unless clone is "", makes clone from it; it returns
// the server and the environment that points dvfs commands at it.
func serveTemplate(bin, data, tpl, name, clone string) (*server, []string, error) {
	srv, err := startServer(bin, data)
	if err != nil {
		return nil, nil, err
	}
	env := []string{"DVFS_SERVER=" + srv.url, "DVFS_TOKEN=" + srv.token}
	if _, out, err := run(env, bin, "template", "publish", "--name", name, tpl); err != nil {
		srv.stop()
		return nil, nil, fmt.Errorf("publish: %v\n%s", err, out)
	}
	if clone != "" {
		if _, out, err := run(env, bin, "clone", "create", "--template", name, clone); err != nil {
			srv.stop()
			return nil, nil, fmt.Errorf("clone create: %v\n%s", err, out)
		}
	}
	return srv, env, nil
}

// run runs a command and returns how long it took.
func run(env []string, name string, args ...string) (time.Duration, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return d, string(out), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return d, string(out), nil
}

// writeVMImage writes a file of size bytes shaped like a used VM disk, in
// 1 MiB extents: 25% never written (holes), 15% zeros written out (a
// wiped or preallocated region), 30% compressible (text, code, logs), and
// 30% incompressible (media, compressed files, encrypted data).
func writeVMImage(path string, size int64, seed uint64) error {
	f, err := createSized(path, size)
	if err != nil {
		return err
	}
	defer f.Close()
	src := rand.NewChaCha8([32]byte{byte(seed)})
	r := rand.New(src)
	buf := make([]byte, 1<<20)
	words := []string{"kernel32.dll ", "HKEY_LOCAL_MACHINE ", "0x00007ffe ", "ntfs ", "[INFO] ", "svchost ", "\r\n", "MZ\x90\x00"}
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		switch k := r.IntN(20); {
		case k < 5:
			continue
		case k < 8:
			clear(buf[:n])
		case k < 14:
			b := buf[:0]
			for int64(len(b)) < n {
				b = append(b, words[r.IntN(len(words))]...)
			}
		default:
			src.Read(buf[:n])
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return f.Sync()
}

// createSized creates path as a file of size bytes, all holes.
func createSized(path string, size int64) (*os.File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func mib(n int64, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }

// dirUse returns the disk space the files under dir take (allocated
// blocks, so holes and punched ranges do not count).
func dirUse(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	return n, err
}
