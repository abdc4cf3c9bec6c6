// Command routerbench measures kiln's router against the backend alone, a
// plain httputil.ReverseProxy and nginx as a keep-alive reverse proxy, all
// on loopback with wrk, at 64 connections and at 1:
//
//	go run ./internal/bench/routerbench
//
// Every server runs as a child process (the driver re-executes itself with
// -mode, or starts nginx with a generated configuration in a temporary
// prefix), so each proxy's CPU time is read from /proc/<pid>/stat and
// divided by the requests it served. It needs wrk and nginx on PATH or in
// /usr/bin and /usr/sbin.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/router"
)

const benchHost = "app.bench.example.com"

func main() {
	mode := flag.String("mode", "", "internal: run as a child server (backend, kiln, kiln-handler, revproxy)")
	upstream := flag.String("upstream", "", "internal: backend address for proxies")
	profile := flag.String("cpuprofile", "", "write the kiln child's CPU profile to this file")
	duration := flag.Duration("d", 5*time.Second, "duration of each wrk run")
	conns := flag.String("c", "64,1", "connection counts to measure")
	handler := flag.Bool("handler", false, "also measure kiln's net/http Handler path")
	flag.Parse()
	if *mode != "" {
		if err := child(*mode, *upstream, *profile); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := drive(*duration, *conns, *profile, *handler); err != nil {
		log.Fatal(err)
	}
}

// child runs one server and prints "listening <addr>" once it accepts.
func child(mode, upstream, profile string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	fmt.Printf("listening %s\n", ln.Addr())
	switch mode {
	case "backend":
		body := []byte("Hello, World!")
		srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain")
			ctx.SetBody(body)
		}}
		go func() { <-ctx.Done(); _ = srv.Shutdown() }()
		return srv.Serve(ln)
	case "revproxy":
		u := &url.URL{Scheme: "http", Host: upstream}
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
		rp.ErrorLog = log.New(io.Discard, "", 0) // wrk cuts connections at the end of a run
		srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
		go func() { <-ctx.Done(); _ = srv.Close() }()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	case "kiln", "kiln-handler":
		b := membus.New()
		r, err := router.New(router.DefaultConfig(), router.Deps{Bus: b})
		if err != nil {
			return err
		}
		host, port, _ := net.SplitHostPort(upstream)
		p, _ := strconv.Atoi(port)
		if err := r.Register(&protocol.Register{Host: host, Port: p, URIs: []string{benchHost}, App: "bench", PrivateInstanceID: "i0", PrivateInstanceIndex: "0"}); err != nil {
			return err
		}
		go func() { _ = r.Run(ctx) }()
		if mode == "kiln-handler" {
			srv := &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 10 * time.Second}
			go func() { <-ctx.Done(); _ = srv.Close() }()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}
		return r.Serve(ctx, ln)
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// proc is a started child server.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string
	dir  string // nginx prefix, removed on stop
}

func startSelf(name, mode, upstream, profile string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-mode", mode, "-upstream", upstream}
	if profile != "" {
		args = append(args, "-cpuprofile", profile)
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%s: no address: %w", name, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return &proc{name: name, cmd: cmd, addr: strings.TrimSpace(strings.TrimPrefix(line, "listening "))}, nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startNginx(upstream string) (*proc, error) {
	bin := lookPath("nginx", "/usr/sbin/nginx")
	dir, err := os.MkdirTemp("", "routerbench-nginx-")
	if err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	// Two workers for two cores, upstream keep-alive, no access log (as
	// the kiln child runs without one): nginx's best case.
	conf := fmt.Sprintf(`worker_processes 2;
daemon off;
master_process on;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream backend { server %[2]s; keepalive 128; }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
    }
  }
}
`, dir, upstream, addr)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{name: "nginx", cmd: cmd, addr: addr, dir: dir}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("nginx did not start: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}

// cpu returns the user+system CPU time of the process and its children
// (nginx's workers), from /proc.
func (p *proc) cpu() time.Duration {
	pids := []int{p.cmd.Process.Pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 2 && f[1] == strconv.Itoa(p.cmd.Process.Pid) {
			pids = append(pids, pid)
		}
	}
	var ticks int64
	for _, pid := range pids {
		if f := statFields(pid); len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + s
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}

// statFields returns the fields of /proc/pid/stat after the command name:
// [0] state, [1] ppid, ..., [11] utime, [12] stime.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	cpuPerRq time.Duration // 0 when not measured
	requests int64
}

var (
	rpsRE  = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	reqRE  = regexp.MustCompile(`(\d+) requests in`)
	pctRE  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	errsRE = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: .*`)
)

func runWrk(addr string, conns int, d time.Duration, p *proc) (result, error) {
	threads := min(conns, 2)
	var before time.Duration
	if p != nil {
		before = p.cpu()
	}
	cmd := exec.Command(lookPath("wrk", "/usr/bin/wrk"), "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", d.String(), "--latency", "-H", "Host: "+benchHost, "http://"+addr+"/")
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w", err)
	}
	var res result
	var used time.Duration
	if p != nil {
		used = p.cpu() - before
	}
	s := string(out)
	if m := errsRE.FindString(s); m != "" {
		fmt.Fprintf(os.Stderr, "warning: %s: %s\n", addr, m)
	}
	m := rpsRE.FindStringSubmatch(s)
	if m == nil {
		return res, fmt.Errorf("wrk output without Requests/sec:\n%s", s)
	}
	res.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := reqRE.FindStringSubmatch(s); m != nil {
		res.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if res.requests > 0 {
		res.cpuPerRq = used / time.Duration(res.requests)
	}
	for _, m := range pctRE.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		dur := time.Duration(v * float64(unit))
		if m[1] == "50" {
			res.p50 = dur
		} else {
			res.p99 = dur
		}
	}
	return res, nil
}

func lookPath(name, fallback string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return fallback
}

func drive(d time.Duration, connList, profile string, withHandler bool) error {
	var counts []int
	for _, c := range strings.Split(connList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -c %q", connList)
		}
		counts = append(counts, n)
	}
	be, err := startSelf("backend", "backend", "", "")
	if err != nil {
		return err
	}
	defer be.stop()
	type target struct {
		name  string
		start func() (*proc, error)
	}
	targets := []target{
		{"direct", func() (*proc, error) { return nil, nil }},
		{"kiln", func() (*proc, error) { return startSelf("kiln", "kiln", be.addr, profile) }},
		{"httputil", func() (*proc, error) { return startSelf("httputil", "revproxy", be.addr, "") }},
		{"nginx", func() (*proc, error) { return startNginx(be.addr) }},
	}
	if withHandler {
		targets = append(targets, target{"kiln-handler", func() (*proc, error) { return startSelf("kiln-handler", "kiln-handler", be.addr, "") }})
	}
	results := map[string]map[int]result{}
	for _, t := range targets {
		p, err := t.start()
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		addr, measured := be.addr, be
		if p != nil {
			addr, measured = p.addr, p
		}
		// Warm up connection pools and the JIT-free but cache-hungry paths.
		if _, err := runWrk(addr, 64, time.Second, nil); err != nil {
			p.stop()
			return fmt.Errorf("%s warm-up: %w", t.name, err)
		}
		results[t.name] = map[int]result{}
		for _, c := range counts {
			res, err := runWrk(addr, c, d, measured)
			if err != nil {
				p.stop()
				return fmt.Errorf("%s at %d connections: %w", t.name, c, err)
			}
			results[t.name][c] = res
		}
		p.stop()
	}
	var names []string
	for _, t := range targets {
		names = append(names, t.name)
	}
	report(os.Stdout, names, counts, results)
	return nil
}

func report(w io.Writer, names []string, counts []int, results map[string]map[int]result) {
	for _, c := range counts {
		fmt.Fprintf(w, "\n%d connections (wrk on loopback; CPU is the measured process's user+system time per request; direct = backend's)\n", c)
		fmt.Fprintf(w, "%-13s %12s %10s %10s %12s %9s %9s %9s\n", "target", "req/s", "p50", "p99", "CPU/req", "×direct", "×nginx", "p99/nginx")
		direct, ngx := results["direct"][c], results["nginx"][c]
		for _, n := range names {
			r := results[n][c]
			fmt.Fprintf(w, "%-13s %12.0f %10s %10s %12s %9.2f %9.2f %9.2f\n", n, r.rps, r.p50, r.p99, r.cpuPerRq,
				r.rps/direct.rps, r.rps/ngx.rps, float64(r.p99)/float64(ngx.p99))
		}
	}
}
