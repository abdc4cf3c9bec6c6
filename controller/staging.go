package controller

import (
	"bytes"
	"context"
	"crypto/sha1" // content address of droplets
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/staging"
)

// errStale aborts a staging whose package was replaced meanwhile.
var errStale = errors.New("controller: package changed during staging")

// stagingQueue runs stagings in the background, at most n at once, one per
// app: a new package cancels the staging of the previous one.
type stagingQueue struct {
	c   *Controller
	sem chan struct{}

	mu      sync.Mutex
	jobs    map[string]*stagingJob
	logs    map[string]*textLog
	waiting int
	active  int
}

type stagingJob struct {
	pkg    string
	cancel context.CancelFunc
}

func newStagingQueue(c *Controller, n int) *stagingQueue {
	return &stagingQueue{c: c, sem: make(chan struct{}, n), jobs: map[string]*stagingJob{}, logs: map[string]*textLog{}}
}

func (q *stagingQueue) running() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active
}

func (q *stagingQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting
}

// log returns the last staging log of app, or nil.
func (q *stagingQueue) log(appID string) *textLog {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.logs[appID]
}

// cancel stops app's staging, if any.
func (q *stagingQueue) cancel(appID string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if j := q.jobs[appID]; j != nil {
		j.cancel()
		delete(q.jobs, appID)
	}
	delete(q.logs, appID)
}

// enqueue stages package pkg of app in the background, replacing a
// staging of another package in progress; a staging of the same package
// already under way is left alone.
func (q *stagingQueue) enqueue(appID, pkg string) {
	q.mu.Lock()
	if j := q.jobs[appID]; j != nil && j.pkg == pkg {
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	ctx, cancel := context.WithCancel(q.c.bgCtx)
	job := &stagingJob{pkg: pkg, cancel: cancel}
	tl := newTextLog(q.c.cfg.StagingLogBytes)
	q.mu.Lock()
	if j := q.jobs[appID]; j != nil {
		j.cancel()
	}
	q.jobs[appID] = job
	q.logs[appID] = tl
	q.waiting++
	q.mu.Unlock()
	ok := q.c.goBackground(func(context.Context) {
		defer cancel()
		defer tl.close()
		select {
		case q.sem <- struct{}{}:
		case <-ctx.Done():
			q.mu.Lock()
			q.waiting--
			q.mu.Unlock()
			return
		}
		q.mu.Lock()
		q.waiting--
		q.active++
		q.mu.Unlock()
		q.c.m.stagingsRunning.Inc()
		defer func() {
			<-q.sem
			q.mu.Lock()
			q.active--
			if q.jobs[appID] == job {
				delete(q.jobs, appID)
			}
			q.mu.Unlock()
			q.c.m.stagingsRunning.Dec()
		}()
		q.c.stage(ctx, appID, tl)
	})
	if !ok {
		cancel()
		q.mu.Lock()
		q.waiting--
		q.mu.Unlock()
		tl.close()
	}
}

// resumeStaging stages the packages left PENDING by a previous run.
func (c *Controller) resumeStaging(ctx context.Context) error {
	apps, err := c.allApps(ctx, "")
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for _, a := range apps {
		if a.PackageState == store.PackagePending && a.PackageHash != "" {
			c.stager.enqueue(a.ID, a.PackageHash)
		}
	}
	return nil
}

// stage stages app's package and, when the app is STARTED, starts or
// rolls out the new droplet.
func (c *Controller) stage(ctx context.Context, appID string, tl *textLog) {
	a, err := c.deps.Store.GetApp(ctx, appID)
	if err != nil {
		c.log.Warn("staging-app-gone", "app", appID, "error", err)
		return
	}
	pkgHash := a.PackageHash
	lw := &lineWriter{emit: func(line string) {
		tl.write(line + "\n")
		c.publish(protocol.LogSubject(protocol.AppID(appID)), protocol.LogLine{App: protocol.AppID(appID), Source: protocol.SourceStaging, Stream: "stdout", Timestamp: c.now().UnixNano(), Line: line})
	}}
	defer lw.Flush()
	res, dropletHash, err := c.runStager(ctx, a, lw)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		lw.emit("staging failed: " + err.Error())
		c.m.stagings.WithLabelValues("failed").Inc()
		_, uerr := c.mutateApp(context.WithoutCancel(ctx), appID, func(x *store.App) error {
			if x.PackageHash != pkgHash {
				return errStale
			}
			x.PackageState = store.PackageFailed
			x.StagingError = clip(err.Error())
			return nil
		})
		if uerr != nil && !errors.Is(uerr, errStale) {
			c.log.Warn("staging-record-failed", "app", appID, "error", uerr)
		}
		c.event(ctx, appID, "staging-failed", clip(err.Error()))
		c.publishUpdated(appID)
		return
	}
	c.m.stagings.WithLabelValues("succeeded").Inc()
	var old store.App
	saved, err := c.mutateApp(ctx, appID, func(x *store.App) error {
		if x.PackageHash != pkgHash {
			return errStale
		}
		old = *x
		x.DropletHash = dropletHash
		x.PackageState = store.PackageStaged
		x.StagingError = ""
		x.StagedAt = c.now()
		x.StagingLogRef = "staging-" + dropletHash
		if x.State == store.AppStarted {
			x.Version = newVersion(dropletHash, x.Version)
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, errStale) {
			c.log.Warn("staging-record-failed", "app", appID, "error", err)
		}
		return
	}
	if _, err := c.deps.Store.AddDroplet(ctx, store.Droplet{AppID: appID, Hash: dropletHash}, c.cfg.DropletHistory); err != nil {
		c.log.Warn("droplet-history-failed", "app", appID, "error", err)
	}
	c.event(ctx, appID, "staging-succeeded", "droplet "+dropletHash+" ("+res.Buildpack+")")
	c.log.Info("app-staged", "app", appID, "droplet", dropletHash, "buildpack", res.Buildpack)
	defer c.publishUpdated(appID)
	if saved.State != store.AppStarted {
		return
	}
	if old.DropletHash != "" && c.actual.hasVersion(appID, old.Version, c.now().Add(-c.cfg.HeartbeatTTL)) {
		c.startRollout(appID, old.Version, saved.Version, "new droplet")
		return
	}
	if err := c.startIndices(ctx, saved, seq(0, saved.Instances)); err != nil {
		lw.emit("start failed: " + err.Error())
	}
}

// runStager runs the stager on the app's package and stores the droplet
// and build cache.
func (c *Controller) runStager(ctx context.Context, a store.App, logw io.Writer) (staging.Result, string, error) {
	pkg, err := c.deps.Blobs.Open(ctx, blobstore.KindPackage, a.PackageHash)
	if err != nil {
		return staging.Result{}, "", fmt.Errorf("open package %s: %w", a.PackageHash, err)
	}
	defer pkg.Close()
	drop, err := os.CreateTemp(c.cfg.TempDir, "kiln-droplet-*.tgz")
	if err != nil {
		return staging.Result{}, "", fmt.Errorf("droplet file: %w", err)
	}
	defer func() { drop.Close(); os.Remove(drop.Name()) }()
	cacheOut, err := os.CreateTemp(c.cfg.TempDir, "kiln-cache-*.tgz")
	if err != nil {
		return staging.Result{}, "", fmt.Errorf("cache file: %w", err)
	}
	defer func() { cacheOut.Close(); os.Remove(cacheOut.Name()) }()
	cacheKey := strings.ToLower(a.ID)
	var cacheIn io.Reader
	if b, err := c.deps.Blobs.Open(ctx, blobstore.KindBuildCache, cacheKey); err == nil {
		defer b.Close()
		cacheIn = b
	}
	env := append([]string(nil), a.Env...)
	if a.Runtime != "" {
		env = append(env, "KILN_RUNTIME="+a.Runtime)
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.StagingTimeout)
	defer cancel()
	h := sha1.New()
	res, err := c.deps.Stager.Stage(sctx, staging.Request{
		AppID: a.ID, Name: a.Name, Package: pkg, PackageSize: pkg.Size(), Buildpack: a.Buildpack,
		Env: env, Stack: a.Stack, Limits: staging.Limits{Timeout: c.cfg.StagingTimeout},
		CacheIn: cacheIn, LogWriter: logw, Droplet: io.MultiWriter(drop, h), CacheOut: cacheOut,
	})
	if err != nil {
		return res, "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if res.DropletSHA1 != "" && res.DropletSHA1 != sum {
		return res, "", fmt.Errorf("droplet hash %s reported, %s written", res.DropletSHA1, sum)
	}
	if _, err := drop.Seek(0, io.SeekStart); err != nil {
		return res, "", fmt.Errorf("droplet: %w", err)
	}
	if _, err := c.deps.Blobs.Put(ctx, blobstore.KindDroplet, sum, drop); err != nil {
		return res, "", fmt.Errorf("store droplet: %w", err)
	}
	if st, err := cacheOut.Stat(); err == nil && st.Size() > 0 {
		if _, err := cacheOut.Seek(0, io.SeekStart); err == nil {
			if _, err := c.deps.Blobs.Put(ctx, blobstore.KindBuildCache, cacheKey, cacheOut); err != nil {
				c.log.Warn("build-cache-store-failed", "app", a.ID, "error", err)
			}
		}
	}
	return res, sum, nil
}

// lineWriter splits a byte stream into lines.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	emit func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		i := bytes.IndexByte(w.buf.Bytes(), '\n')
		if i < 0 {
			if w.buf.Len() > 64<<10 {
				w.emit(w.buf.String())
				w.buf.Reset()
			}
			return len(p), nil
		}
		line := strings.TrimRight(string(w.buf.Next(i+1)), "\r\n")
		w.emit(line)
	}
}

// Flush emits a last unterminated line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 0 {
		w.emit(w.buf.String())
		w.buf.Reset()
	}
}

// textLog is a bounded text buffer that readers can follow until closed.
type textLog struct {
	max int

	mu      sync.Mutex
	buf     []byte
	dropped int64
	closed  bool
	changed chan struct{}
}

func newTextLog(max int) *textLog { return &textLog{max: max, changed: make(chan struct{})} }

func (t *textLog) write(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, s...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.dropped += int64(over)
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *textLog) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		close(t.changed)
	}
}

// read returns the text from absolute offset off, the next offset, whether
// the log is complete, and a channel closed at the next change.
func (t *textLog) read(off int64) (string, int64, bool, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	start := off - t.dropped
	if start < 0 {
		start = 0
	}
	if start > int64(len(t.buf)) {
		start = int64(len(t.buf))
	}
	return string(t.buf[start:]), t.dropped + int64(len(t.buf)), t.closed, t.changed
}
