package dea

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Fetcher obtains droplets. The DEA verifies the SHA1 of what it reads and
// caches droplets by hash, so a Fetcher need not do either. Fetch may be
// called concurrently (for different droplets).
type Fetcher interface {
	// Fetch returns the droplet at uri (a start message's executableUri,
	// or its executableFile when it has no URI). The caller closes the
	// reader.
	Fetch(ctx context.Context, uri string) (io.ReadCloser, error)
}

// HTTPFetcher fetches droplets with HTTP GET. It is the default Fetcher.
type HTTPFetcher struct {
	// Client makes the requests; nil means http.DefaultClient.
	Client *http.Client
}

// Fetch implements Fetcher. Only http and https URIs are accepted, and only
// a 200 response is a droplet.
func (f HTTPFetcher) Fetch(ctx context.Context, uri string) (io.ReadCloser, error) {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("dea: fetch %q: not an http(s) url", uri)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("dea: fetch %s: %w", u.Redacted(), err)
	}
	c := f.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("dea: fetch %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("dea: fetch %s: status %s", u.Redacted(), resp.Status)
	}
	return resp.Body, nil
}

// validSHA1 reports whether s is a 40-digit hex SHA1, which makes it a safe
// file name.
func validSHA1(s string) bool {
	if len(s) != 40 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// dropletCache keeps droplets on disk by SHA1, least recently used first
// out once above its byte bound. Concurrent gets of one hash share a
// single download.
type dropletCache struct {
	dir     string
	max     int64
	limit   int64
	fetcher Fetcher
	onFetch func(hit bool)

	mu       sync.Mutex
	lru      *list.List // of *cacheEntry, most recent at front
	entries  map[string]*list.Element
	total    int64
	inflight map[string]*fetchCall
}

type cacheEntry struct {
	sha  string
	size int64
}

type fetchCall struct {
	done chan struct{}
	err  error
}

func newDropletCache(dir string, max, limit int64, f Fetcher, onFetch func(bool)) (*dropletCache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dea: droplet cache: %w", err)
	}
	c := &dropletCache{
		dir: dir, max: max, limit: limit, fetcher: f, onFetch: onFetch,
		lru: list.New(), entries: map[string]*list.Element{}, inflight: map[string]*fetchCall{},
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("dea: droplet cache: %w", err)
	}
	// Reload what a previous run left, oldest first so the newest end up
	// most recent; remove partial downloads.
	type found struct {
		sha  string
		size int64
		mod  int64
	}
	var fs []found
	for _, de := range des {
		name := de.Name()
		sha, ok := strings.CutSuffix(name, ".tgz")
		info, ierr := de.Info()
		if !ok || !validSHA1(sha) || ierr != nil || !info.Mode().IsRegular() {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		fs = append(fs, found{sha, info.Size(), info.ModTime().UnixNano()})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].mod < fs[j].mod })
	for _, f := range fs {
		c.addLocked(f.sha, f.size)
	}
	c.evictLocked("")
	return c, nil
}

func (c *dropletCache) path(sha string) string { return filepath.Join(c.dir, sha+".tgz") }

// open returns the cached droplet sha, fetching it from uri if needed. The
// returned file stays readable even if the entry is evicted meanwhile.
func (c *dropletCache) open(ctx context.Context, sha, uri string) (*os.File, error) {
	sha = strings.ToLower(sha)
	if !validSHA1(sha) {
		return nil, fmt.Errorf("dea: droplet sha1 %q is not 40 hex digits", sha)
	}
	for first := true; ; first = false {
		c.mu.Lock()
		if el, ok := c.entries[sha]; ok {
			c.lru.MoveToFront(el)
			f, err := os.Open(c.path(sha))
			c.mu.Unlock()
			if err == nil {
				if first && c.onFetch != nil {
					c.onFetch(true)
				}
				return f, nil
			}
			c.drop(sha)
			continue
		}
		call, ok := c.inflight[sha]
		if !ok {
			call = &fetchCall{done: make(chan struct{})}
			c.inflight[sha] = call
			c.mu.Unlock()
			if c.onFetch != nil {
				c.onFetch(false)
			}
			call.err = c.download(ctx, sha, uri)
			c.mu.Lock()
			delete(c.inflight, sha)
			c.mu.Unlock()
			close(call.done)
			if call.err != nil {
				return nil, call.err
			}
			continue
		}
		c.mu.Unlock()
		select {
		case <-call.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		// Another caller's cancellation is not ours: try again.
		if call.err != nil && !errors.Is(call.err, context.Canceled) && !errors.Is(call.err, context.DeadlineExceeded) {
			return nil, call.err
		}
	}
}

func (c *dropletCache) drop(sha string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[sha]; ok {
		c.removeLocked(el)
	}
}

// download fetches uri into the cache as sha, verifying the hash.
func (c *dropletCache) download(ctx context.Context, sha, uri string) error {
	rc, err := c.fetcher.Fetch(ctx, uri)
	if err != nil {
		return err
	}
	defer rc.Close()
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	tmp := filepath.Join(c.dir, sha+".pending-"+hex.EncodeToString(nonce[:]))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("dea: droplet %s: %w", sha, err)
	}
	h := sha1.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, c.limit+1))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		err = fmt.Errorf("dea: droplet %s: download: %w", sha, err)
	case n > c.limit:
		err = fmt.Errorf("dea: droplet %s: more than %d bytes: %w", sha, c.limit, ErrDropletTooLarge)
	case hex.EncodeToString(h.Sum(nil)) != sha:
		err = fmt.Errorf("dea: droplet %s: got sha1 %x: %w", sha, h.Sum(nil), ErrSHA1Mismatch)
	}
	if err == nil {
		err = os.Rename(tmp, c.path(sha))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addLocked(sha, n)
	c.evictLocked(sha)
	return nil
}

func (c *dropletCache) addLocked(sha string, size int64) {
	if el, ok := c.entries[sha]; ok {
		c.removeLocked(el)
	}
	c.entries[sha] = c.lru.PushFront(&cacheEntry{sha: sha, size: size})
	c.total += size
}

func (c *dropletCache) removeLocked(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.entries, e.sha)
	c.total -= e.size
	_ = os.Remove(c.path(e.sha))
}

// evictLocked removes least recently used droplets, but never keep, until
// the cache is within its bound.
func (c *dropletCache) evictLocked(keep string) {
	for el := c.lru.Back(); el != nil && c.total > c.max; {
		prev := el.Prev()
		if el.Value.(*cacheEntry).sha != keep {
			c.removeLocked(el)
		}
		el = prev
	}
}

// size returns the cached bytes and droplet count.
func (c *dropletCache) size() (int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total, len(c.entries)
}
