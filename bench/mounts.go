//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// daemon is a long-running dvfs process (a mount) started by the harness.
type daemon struct {
	cmd *exec.Cmd
	dir string
}

// startDaemon runs bin with args and waits for its "msg=mounted" line.
func startDaemon(env []string, dir, bin string, args ...string) (*daemon, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	pr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		var log strings.Builder
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "msg=mounted") {
				ready <- true
				io.Copy(io.Discard, pr)
				return
			}
		}
		fmt.Fprint(os.Stderr, log.String())
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			return nil, fmt.Errorf("%s %s exited before mounting", bin, strings.Join(args, " "))
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		return nil, fmt.Errorf("%s not mounted after 60s", dir)
	}
	return &daemon{cmd: cmd, dir: dir}, nil
}

// stop unmounts and waits for the process.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		d.cmd.Process.Kill()
		syscall.Unmount(d.dir, syscall.MNT_DETACH)
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }
