//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
)

// benchS3 measures a publish and a cold read of the same template through
// a server whose blocks are in an S3 server (versitygw on loopback, its
// buckets on the same disk, behind a proxy that counts its requests)
// against a server with the embedded badger store, in the same run.
func benchS3(args []string) error {
	fl := flag.NewFlagSet("s3", flag.ExitOnError)
	sizeStr := fl.String("size", "1GiB", "image size")
	dir := fl.String("dir", "/var/tmp", "scratch directory (on the disk measured)")
	runs := fl.Int("runs", 2, "measurements of each store")
	fl.Parse(args)
	size, err := humanize.ParseBytes(*sizeStr)
	if err != nil {
		return err
	}
	gw := s3test.Binary()
	if gw == "" {
		return errors.New("versitygw is missing: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
	}
	work, bin, cleanup, err := workspace(*dir, "s3")
	if err != nil {
		return err
	}
	defer cleanup()
	vm := filepath.Join(work, "vm")
	os.Mkdir(vm, 0o755)
	fmt.Printf("writing a %s VM-disk-like image in %s\n", humanize.IBytes(size), work)
	if err := writeVMImage(filepath.Join(vm, "disk-flat.vmdk"), int64(size), 1); err != nil {
		return err
	}
	buckets := filepath.Join(work, "buckets")
	if err := os.MkdirAll(filepath.Join(buckets, "bench"), 0o755); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	gwAddr := ln.Addr().String()
	ln.Close()
	gwCmd := exec.Command(gw, s3test.Args(gwAddr, buckets)...)
	gwCmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work}
	if err := gwCmd.Start(); err != nil {
		return err
	}
	defer func() { gwCmd.Process.Signal(syscall.SIGTERM); gwCmd.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		// Any answer (an anonymous request is refused) says it serves.
		if resp, err := http.Get("http://" + gwAddr + "/"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw does not answer on %s", gwAddr)
		}
	}
	proxy, err := startS3Proxy(gwAddr)
	if err != nil {
		return err
	}
	defer proxy.close()

	gib := float64(size) / (1 << 30)
	fmt.Printf("\n%-4s %-7s %10s %10s %10s %10s %s\n", "run", "store", "publish s", "MiB/s", "cold read s", "MiB/s", "object-store requests (publish | cold read)")
	best := map[string][2]time.Duration{}
	var pubCounts, readCounts requestCounts
	for i := 1; i <= *runs; i++ {
		for _, kind := range []string{"badger", "s3"} {
			var extra []string
			var env []string
			if kind == "s3" {
				extra = []string{"--store", fmt.Sprintf("s3://bench/run%d?endpoint=%s&region=%s&tls=false", i, proxy.addr, s3test.Region)}
				env = []string{"DVFS_S3_ACCESS_KEY=" + s3test.AccessKey, "DVFS_S3_SECRET_KEY=" + s3test.SecretKey}
			}
			pub, read, pc, rc, err := s3Once(bin, filepath.Join(work, kind), vm, env, extra, proxy)
			if err != nil {
				return fmt.Errorf("%s: %w", kind, err)
			}
			counts := "-"
			if kind == "s3" {
				counts = pc.String() + " | " + rc.String()
				pubCounts, readCounts = pc, rc
			}
			fmt.Printf("%-4d %-7s %10.2f %10.0f %10.2f %10.0f %s\n", i, kind, pub.Seconds(), mib(int64(size), pub), read.Seconds(), mib(int64(size), read), counts)
			b, ok := best[kind]
			if !ok || pub < b[0] {
				b[0] = pub
			}
			if !ok || read < b[1] {
				b[1] = read
			}
			best[kind] = b
		}
	}
	bd, sd := best["badger"], best["s3"]
	fmt.Printf("\nbest of %d, throughput s3/badger: publish %.2f, cold read %.2f\n", *runs, bd[0].Seconds()/sd[0].Seconds(), bd[1].Seconds()/sd[1].Seconds())
	fmt.Printf("requests per GiB of image, last run: publish %s; cold read %s\n", pubCounts.per(gib), readCounts.per(gib))
	fmt.Printf("bytes per GiB of image: PUT %s, GET %s\n", humanize.IBytes(uint64(float64(pubCounts.putBytes)/gib)), humanize.IBytes(uint64(float64(readCounts.getBytes)/gib)))
	return nil
}

// s3Once publishes vm into a fresh server (with extra flags and env),
// restarts the server, and reads the template through a mount with an
// empty cache, page cache dropped before each; it returns both times and
// the object-store requests of each.
func s3Once(bin, data, vm string, env, extra []string, proxy *s3Proxy) (pub, read time.Duration, pc, rc requestCounts, err error) {
	defer os.RemoveAll(data)
	for k, v := range envMap(env) {
		os.Setenv(k, v)
		defer os.Unsetenv(k)
	}
	srv, err := startServer(bin, filepath.Join(data, "server"), extra...)
	if err != nil {
		return
	}
	cenv := []string{"DVFS_SERVER=" + srv.url, "DVFS_TOKEN=" + srv.token}
	if err = dropCaches(); err != nil {
		srv.stop()
		return
	}
	proxy.reset()
	// --compress=yes: what a client over a real network sends; the object
	// store keeps frames as uploaded (it has no deferred compression).
	pub, _, err = run(cenv, bin, "template", "publish", "--name", "bench", "--compress=yes", vm)
	srv.stop()
	pc = proxy.reset()
	if err != nil {
		return
	}
	if srv, err = startServer(bin, filepath.Join(data, "server"), extra...); err != nil {
		return
	}
	defer srv.stop()
	cenv = []string{"DVFS_SERVER=" + srv.url, "DVFS_TOKEN=" + srv.token}
	mnt := filepath.Join(data, "mnt")
	os.Mkdir(mnt, 0o755)
	dv, err := startDaemon(cenv, mnt, bin, "mount", "--cache", filepath.Join(data, "cache"), mnt)
	if err != nil {
		return
	}
	defer dv.stop()
	if err = dropCaches(); err != nil {
		return
	}
	proxy.reset()
	read, _, err = run(nil, "dd", "if="+filepath.Join(mnt, "templates", "bench", "disk-flat.vmdk"), "of=/dev/null", "bs=1M")
	rc = proxy.reset()
	return
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// requestCounts are the S3 requests a proxy passed, by kind.
type requestCounts struct {
	put, get, list, head, other int64
	putBytes, getBytes          int64
}

func (c requestCounts) String() string {
	return fmt.Sprintf("PUT %d GET %d LIST %d HEAD %d other %d", c.put, c.get, c.list, c.head, c.other)
}

// per is the counts per unit (a GiB), as a string.
func (c requestCounts) per(units float64) string {
	f := func(n int64) float64 { return float64(n) / units }
	return fmt.Sprintf("PUT %.0f, GET %.0f, LIST %.1f, HEAD %.1f, other %.1f", f(c.put), f(c.get), f(c.list), f(c.head), f(c.other))
}

// s3Proxy forwards HTTP requests to an S3 server and counts them.
// The Host header passes unchanged, so request signatures still hold.
type s3Proxy struct {
	addr string
	srv  *http.Server

	mu sync.Mutex
	n  requestCounts
}

func startS3Proxy(target string) (*s3Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &s3Proxy{addr: ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.count(r)
		cw := &countingWriter{ResponseWriter: w}
		rp.ServeHTTP(cw, r)
		if r.Method == http.MethodGet {
			p.mu.Lock()
			p.n.getBytes += cw.n
			p.mu.Unlock()
		}
	})}
	go p.srv.Serve(ln)
	return p, nil
}

func (p *s3Proxy) count(r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Path style: /BUCKET is the bucket (a GET lists it), /BUCKET/KEY an
	// object.
	object := strings.Contains(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodPut && object:
		p.n.put++
		// A streaming-signed upload's length counts its chunk
		// signatures; the decoded length is the object's.
		n := r.ContentLength
		if d, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64); err == nil {
			n = d
		}
		p.n.putBytes += max(n, 0)
	case r.Method == http.MethodGet && object:
		p.n.get++
	case r.Method == http.MethodGet && r.URL.Query().Has("location"):
		p.n.other++
	case r.Method == http.MethodGet:
		p.n.list++
	case r.Method == http.MethodHead:
		p.n.head++
	default:
		p.n.other++
	}
}

// reset returns the counts so far and starts again from zero.
func (p *s3Proxy) reset() requestCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.n
	p.n = requestCounts{}
	return n
}

func (p *s3Proxy) close() { p.srv.Close() }

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController (the reverse proxy's flushes) reach
// the connection.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
