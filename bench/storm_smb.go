//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const stormSMBPass = "storm-bench"

// startSamba starts a private Samba in the server's namespace serving
// dir/share as [storm]: its own smb.conf, lock, state, cache and passdb
// under dir, bound to the server's address only, in a private mount
// namespace (a Samba started in the host's mount namespace after FUSE
// mounts keeps copies of them, and unmounting then hangs). The user is
// root, with a password in the private passdb.
func (s *storm) startSamba(ctx context.Context, dir string) (*bg, error) {
	for _, d := range []string{"share", "lock", "state", "cache", "private", "run", "ncalrpc", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	addr := s.tn.addr(0).String()
	conf := filepath.Join(dir, "smb.conf")
	text := fmt.Sprintf(`[global]
	server role = standalone server
	interfaces = %[2]s/24
	bind interfaces only = yes
	smb ports = 445
	disable netbios = yes
	lock directory = %[1]s/lock
	state directory = %[1]s/state
	cache directory = %[1]s/cache
	private dir = %[1]s/private
	pid directory = %[1]s/run
	ncalrpc dir = %[1]s/ncalrpc
	log file = %[1]s/log/log.%%m
	passdb backend = tdbsam:%[1]s/private/passdb.tdb
	server min protocol = SMB2_02
	load printers = no
	printing = bsd
	printcap name = /dev/null
	disable spoolss = yes
	map to guest = never

[storm]
	path = %[1]s/share
	read only = no
	valid users = root
`, dir, addr)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	pw := exec.Command("smbpasswd", "-c", conf, "-s", "-a", "root")
	pw.Stdin = strings.NewReader(stormSMBPass + "\n" + stormSMBPass + "\n")
	if out, err := pw.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("smbpasswd: %v %s", err, out)
	}
	cmd := s.nsCmd(0, nil, "unshare", "-m", "--propagation", "private",
		"smbd", "--foreground", "--no-process-group", "--debug-stdout", "-s", conf)
	// A process group of its own: smbd signals its whole group as it
	// exits, which would otherwise include this process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	smbd, err := startBG(cmd, filepath.Join(dir, "smbd.log"))
	if err != nil {
		return nil, err
	}
	s.atExit(func() { smbd.stop(10 * time.Second) })
	up := waitFor(ctx, 20*time.Second, func() bool {
		return s.tn.in(0, func() error {
			c, err := net.DialTimeout("tcp", addr+":445", time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	})
	if !up {
		return nil, fmt.Errorf("smbd did not listen on %s:445:\n%s", addr, tail([]byte(smbd.log()), 2000))
	}
	return smbd, nil
}

// runSMB runs the workload against clone files on Samba: straight over
// SMB (smb), by download-run-upload (copy), or through an rclone mount
// with its full VFS cache (rclone).
func (s *storm) runSMB(ctx context.Context, r *stormRow, dir, target string) error {
	n := r.N
	if target == "rclone" {
		if _, err := exec.LookPath("rclone"); err != nil {
			r.Note = "skipped: no rclone"
			return nil
		}
		if out, _ := exec.Command("rclone", "help", "backends").Output(); !strings.Contains(string(out), "smb") {
			r.Note = "skipped: this rclone has no smb backend"
			return nil
		}
	}
	sdir := filepath.Join(dir, "samba")
	os.MkdirAll(filepath.Join(sdir, "share"), 0o755)
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("ws%d.img", i+1)
		if err := copySparse(s.template, filepath.Join(sdir, "share", names[i])); err != nil {
			return err
		}
	}
	smbd, err := s.startSamba(ctx, sdir)
	if err != nil {
		return err
	}
	addr := s.tn.addr(0).String() + ":445"
	smbArgs := func(i int) []string {
		return []string{"-smb-addr", addr, "-smb-share", "storm", "-smb-name", names[i], "-smb-user", "root", "-smb-pass", stormSMBPass}
	}
	var extra func(i int) []string
	var done func(wk *worker)
	rcl := make([]*bg, n)
	durable := make([]time.Time, n)
	rcpu0, rcpuWork := make([]float64, n), make([]float64, n) // rclone's CPU at the start, and until its workload completed
	var errMu sync.Mutex
	var rerrs []error
	switch target {
	case "smb":
		extra = func(i int) []string { return append([]string{"-mode", "smb"}, smbArgs(i)...) }
		done = func(*worker) {}
	case "copy":
		extra = func(i int) []string {
			local := filepath.Join(dir, fmt.Sprintf("ws%d-local.img", i+1))
			return append([]string{"-mode", "copy", "-path", local}, smbArgs(i)...)
		}
		done = func(*worker) {}
	case "rclone":
		conf := filepath.Join(dir, "rclone.conf")
		obs, err := exec.Command("rclone", "obscure", stormSMBPass).Output()
		if err != nil {
			return fmt.Errorf("rclone obscure: %v", err)
		}
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("[srv]\ntype = smb\nhost = %s\nuser = root\npass = %s\n",
			s.tn.addr(0), strings.TrimSpace(string(obs)))), 0o600); err != nil {
			return err
		}
		mnts := make([]string, n)
		for i := range n {
			wdir := filepath.Join(dir, fmt.Sprintf("ws%d", i+1))
			mnts[i] = filepath.Join(wdir, "mnt")
			os.MkdirAll(mnts[i], 0o755)
			p, err := startBG(s.nsCmd(i+1, nil, "rclone", "mount", "srv:storm", mnts[i], "--config", conf,
				"--vfs-cache-mode", "full", "--cache-dir", filepath.Join(wdir, "cache"), "--vfs-write-back", "1s", "-v"),
				filepath.Join(wdir, "rclone.log"))
			if err != nil {
				return err
			}
			rcl[i] = p
			mnt := mnts[i]
			s.atExit(func() {
				select {
				case <-p.done:
				default:
					exec.Command("fusermount3", "-uz", mnt).Run()
					p.stop(10 * time.Second)
				}
			})
			if !waitFor(ctx, 30*time.Second, func() bool { return mounted(mnt) }) {
				return fmt.Errorf("workstation %d: rclone mount did not come up:\n%s", i+1, tail([]byte(p.log()), 2000))
			}
		}
		extra = func(i int) []string { return []string{"-mode", "file", "-path", filepath.Join(mnts[i], names[i])} }
		done = func(wk *worker) {
			// The guest has closed its disk; rclone uploads the file
			// --vfs-write-back after. Its log says when; then unmount.
			p := rcl[wk.i]
			rcpuWork[wk.i] = procCPU(p.cmd.Process.Pid) - rcpu0[wk.i]
			ok := waitFor(ctx, 10*time.Minute, func() bool { return strings.Contains(p.log(), "upload succeeded") })
			durable[wk.i] = time.Now()
			var err error
			if !ok && wk.err == nil {
				err = fmt.Errorf("workstation %d: rclone logged no finished upload:\n%s", wk.i+1, tail([]byte(p.log()), 1500))
			}
			exec.Command("fusermount3", "-u", mnts[wk.i]).Run()
			if !p.wait(time.Minute) {
				p.stop(10 * time.Second)
			}
			if err != nil {
				errMu.Lock()
				rerrs = append(rerrs, err)
				errMu.Unlock()
			}
		}
	}
	if err := dropCaches(); err != nil {
		return err
	}
	for i, p := range rcl {
		if p != nil {
			rcpu0[i] = procCPU(p.cmd.Process.Pid)
		}
	}
	tree := watchTree(smbd.cmd.Process.Pid)
	defer tree.end()
	cpu0, wb0 := tree.totals()
	links := s.measure(r)
	startAt, wks, wg := s.startWorkers(n, extra, done)
	wg.Wait()
	links()
	r.collect(startAt, wks)
	for _, err := range rerrs {
		r.errorf("%v", err)
	}
	if target == "rclone" {
		for i := range n {
			if wks[i].err == nil {
				r.Durable[i] = durable[i].Sub(startAt).Seconds()
			}
			r.WSCPU[i] += rcl[i].cpu() - rcpu0[i]
			r.WSCPUWork[i] += rcpuWork[i]
		}
	}
	// The sessions end with the workers; smbd's children have exited.
	time.Sleep(300 * time.Millisecond)
	cpu1, wb1 := tree.totals()
	r.SrvCPU, r.DiskW = cpu1-cpu0, wb1-wb0
	for i := range n {
		s.check(r, i, filepath.Join(sdir, "share", names[i]))
	}
	return ctx.Err()
}

// mounted says whether path is a mount point.
func mounted(path string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}
