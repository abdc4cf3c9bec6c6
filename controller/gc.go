package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/store"
)

// gcPageSize is the number of apps read per store page while collecting
// the blobs they reference.
const gcPageSize = 500

// gcKinds are the blob kinds the garbage collector sweeps, in sweep order.
// The resource pool (blobstore.KindResource) is not among them: its files
// are shared by every app by design and referenced by no record.
var gcKinds = [...]blobstore.Kind{blobstore.KindPackage, blobstore.KindDroplet, blobstore.KindBuildCache}

// GCStats summarises one garbage collection sweep.
type GCStats struct {
	// Scanned counts the blobs listed (packages, droplets, build caches).
	Scanned int
	// Referenced counts the blobs kept because an app refers to them.
	Referenced int
	// Young counts unreferenced blobs kept because they are younger than
	// Config.GCGrace.
	Young int
	// Collected counts the blobs deleted, by kind (kinds with none are
	// absent).
	Collected map[blobstore.Kind]int
	// CollectedBytes sums the sizes of the deleted blobs.
	CollectedBytes int64
}

// CollectedTotal returns the number of blobs deleted, over all kinds.
func (s GCStats) CollectedTotal() int {
	n := 0
	for _, c := range s.Collected {
		n += c
	}
	return n
}

// CollectGarbage runs one sweep of the blob garbage collector and returns
// what it found; Run calls it every Config.GCInterval, operators and tests
// call it on demand.
//
// A sweep first reads, page by page, every app in the store and notes the
// blobs they reference: an app's package (App.PackageHash), its current
// droplet (App.DropletHash) and every droplet kept in its history for
// rollback (store.Droplets), and its build cache (keyed by the app id).
// Then it lists the packages, droplets and build caches in the blobstore and
// deletes each one that no app referenced and that is older than
// Config.GCGrace, logging "blob-collected" and counting it in
// kiln_controller_blobs_collected_total. Droplets trimmed from an app's
// history and every blob of a deleted app are collected this way. The
// resource pool is left alone: its files are shared by design.
//
// Sweeps are safe with several controllers sharing one store and blobstore,
// and with a sweep running concurrently with another: a blob is only
// deleted when the shared store references it nowhere, and only when it is
// older than the grace both when listed and again just before deletion, so
// a package being uploaded or a droplet being staged (stored, then recorded
// on the app moments later) is never taken. A blob another controller
// deleted first is simply skipped. A blob that becomes wanted again after
// it was collected — the same bits pushed again, the same droplet staged
// again — is re-uploaded by those normal flows, which store it afresh:
// nothing refers to a content-addressed blob without storing it first, and
// rollback only offers droplets kept in the history, which are never
// collected.
//
// If reading the store or listing the blobstore fails, the sweep stops and
// the error (wrapping the store's or blobstore's) is returned with the stats
// so far; it never deletes anything on an incomplete view of the
// references. A blob that cannot be deleted is logged and skipped; such
// failures are returned joined after the sweep has finished.
func (c *Controller) CollectGarbage(ctx context.Context) (GCStats, error) {
	start := c.now()
	var stats GCStats
	// References are read before the blobs are listed: a blob stored after
	// the references were read is listed with a recent ModTime and spared
	// by the grace.
	refs, err := c.blobReferences(ctx)
	if err != nil {
		return stats, fmt.Errorf("controller: gc: %w", err)
	}
	var failed []error
	for _, kind := range gcKinds {
		for info, err := range c.deps.Blobs.List(ctx, kind) {
			if err != nil {
				return stats, fmt.Errorf("controller: gc: list %s: %w", kind, err)
			}
			stats.Scanned++
			if refs.has(kind, info.Key) {
				stats.Referenced++
				continue
			}
			// The cutoff follows the clock: a long sweep never judges a
			// blob stored during it by the start time.
			cutoff := c.now().Add(-c.cfg.GCGrace)
			if !info.ModTime.Before(cutoff) {
				stats.Young++
				continue
			}
			size, outcome, err := c.collectBlob(ctx, kind, info.Key, cutoff)
			switch {
			case err != nil && ctx.Err() != nil:
				return stats, fmt.Errorf("controller: gc: %w", ctx.Err())
			case err != nil:
				c.log.Warn("blob-collect-failed", "kind", string(kind), "key", info.Key, "error", err)
				failed = append(failed, err)
			case outcome == gcYoung:
				stats.Young++
			case outcome == gcDeleted:
				if stats.Collected == nil {
					stats.Collected = map[blobstore.Kind]int{}
				}
				stats.Collected[kind]++
				stats.CollectedBytes += size
				c.m.blobsCollected.WithLabelValues(string(kind)).Inc()
				c.m.bytesCollected.WithLabelValues(string(kind)).Add(float64(size))
				c.log.Info("blob-collected", "kind", string(kind), "key", info.Key, "size", size)
			}
		}
	}
	level := slog.LevelDebug
	if stats.CollectedTotal() > 0 || len(failed) > 0 {
		level = slog.LevelInfo
	}
	c.log.Log(ctx, level, "gc-finished", "scanned", stats.Scanned, "referenced", stats.Referenced,
		"young", stats.Young, "collected", stats.CollectedTotal(), "bytes", stats.CollectedBytes,
		"failed", len(failed), "duration", c.now().Sub(start))
	if len(failed) > 0 {
		return stats, fmt.Errorf("controller: gc: %d blobs not deleted: %w", len(failed), errors.Join(failed...))
	}
	return stats, nil
}

// gcOutcome is what collectBlob did.
type gcOutcome int

const (
	// gcGone: the blob was no longer there (another sweep took it).
	gcGone gcOutcome = iota
	// gcYoung: the blob was stored again since it was listed.
	gcYoung
	// gcDeleted: the blob was deleted.
	gcDeleted
)

// collectBlob deletes kind/key unless it was stored again at or after
// cutoff since it was listed, and returns its size.
func (c *Controller) collectBlob(ctx context.Context, kind blobstore.Kind, key string, cutoff time.Time) (int64, gcOutcome, error) {
	info, err := c.deps.Blobs.Stat(ctx, kind, key)
	if errors.Is(err, blobstore.ErrNotFound) {
		return 0, gcGone, nil
	}
	if err != nil {
		return 0, gcGone, fmt.Errorf("stat %s/%s: %w", kind, key, err)
	}
	if !info.ModTime.Before(cutoff) {
		return 0, gcYoung, nil
	}
	err = c.deps.Blobs.Delete(ctx, kind, key)
	if errors.Is(err, blobstore.ErrNotFound) {
		return 0, gcGone, nil
	}
	if err != nil {
		return 0, gcGone, fmt.Errorf("delete %s/%s: %w", kind, key, err)
	}
	return info.Size, gcDeleted, nil
}

// blobRefs is the set of blob keys the apps of the store refer to.
type blobRefs struct {
	packages map[string]bool
	droplets map[string]bool
	// apps holds the build cache keys: the ids of existing apps, lowered
	// as staging does.
	apps map[string]bool
}

func (r *blobRefs) has(kind blobstore.Kind, key string) bool {
	key = strings.ToLower(key)
	switch kind {
	case blobstore.KindPackage:
		return r.packages[key]
	case blobstore.KindDroplet:
		return r.droplets[key]
	case blobstore.KindBuildCache:
		return r.apps[key]
	}
	// Unknown kinds are never collected.
	return true
}

// blobReferences reads every app of the store and the blobs it refers to.
func (c *Controller) blobReferences(ctx context.Context) (*blobRefs, error) {
	refs := &blobRefs{packages: map[string]bool{}, droplets: map[string]bool{}, apps: map[string]bool{}}
	add := func(m map[string]bool, key string) {
		if key != "" {
			m[strings.ToLower(key)] = true
		}
	}
	opts := store.ListOptions{Limit: gcPageSize}
	for {
		page, err := c.deps.Store.ListApps(ctx, "", opts)
		if err != nil {
			return nil, fmt.Errorf("list apps: %w", err)
		}
		for _, a := range page.Items {
			add(refs.apps, a.ID)
			add(refs.packages, a.PackageHash)
			add(refs.droplets, a.DropletHash)
			ds, err := c.deps.Store.Droplets(ctx, a.ID)
			if errors.Is(err, store.ErrNotFound) {
				// Deleted since it was listed: its blobs go next time.
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("droplets of app %s: %w", a.ID, err)
			}
			for _, d := range ds {
				add(refs.droplets, d.Hash)
			}
		}
		if page.Next == "" {
			return refs, nil
		}
		opts.Cursor = page.Next
	}
}

// collectPeriodically runs CollectGarbage every Config.GCInterval until ctx
// ends. A failed sweep is logged; the next one starts afresh.
func (c *Controller) collectPeriodically(ctx context.Context) error {
	t := time.NewTicker(c.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := c.CollectGarbage(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("gc-failed", "error", err)
			}
		}
	}
}
