package controller

import (
	"io"
	"net/http"
	"slices"
	"sort"
)

// getInfo is GET /info: the anonymous form, plus user, limits, usage and
// frameworks when a valid token is sent.
func (c *Controller) getInfo(k *call) error {
	out := map[string]any{
		"name":        "vcap",
		"build":       2222,
		"support":     c.cfg.Support,
		"version":     "0.999",
		"description": c.cfg.Description,
		"allow_debug": false,
	}
	if c.cfg.Domain != "" {
		// A kiln extension old clients ignore: clients derive an app's
		// default route, <name>.<app_domain>, from it.
		out["app_domain"] = c.cfg.Domain
	}
	if k.user != nil {
		q, usage, err := c.quotaUsage(k.r.Context(), *k.user)
		if err != nil {
			return err
		}
		out["user"] = k.user.Email
		out["limits"] = map[string]int{"memory": q.MemoryMB, "app_uris": q.URIs, "services": q.Services, "apps": q.Apps}
		out["usage"] = map[string]int{"memory": usage.MemoryMB, "apps": usage.Apps, "services": usage.Services}
		out["frameworks"] = c.frameworksInfo()
	}
	writeJSON(k.w, http.StatusOK, out)
	return nil
}

func (c *Controller) frameworksInfo() map[string]any {
	out := map[string]any{}
	names := make([]string, 0, len(c.cfg.Frameworks))
	for n := range c.cfg.Frameworks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fw := c.cfg.Frameworks[n]
		rts := []map[string]string{}
		for _, r := range fw.Runtimes {
			rt := c.cfg.Runtimes[r]
			rts = append(rts, map[string]string{"name": r, "version": rt.Version, "description": rt.Description})
		}
		out[n] = map[string]any{"name": n, "runtimes": rts, "appservers": []any{}, "detection": []any{}}
	}
	return out
}

// index is GET /: a welcome text.
func (c *Controller) index(k *call) error {
	k.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(k.w, "Welcome to kiln, the cloud application platform. "+c.cfg.Description+"\n")
	return nil
}

// notImplemented answers the routes the original declared but never
// implemented.
func (c *Controller) notImplemented(k *call) error {
	writeJSON(k.w, http.StatusNotImplemented, map[string]string{"error": "Not yet implemented"})
	return nil
}

// getRuntimes is GET /info/runtimes: the configured runtimes verbatim.
func (c *Controller) getRuntimes(k *call) error {
	out := make(map[string]Runtime, len(c.cfg.Runtimes))
	for n, r := range c.cfg.Runtimes {
		if r.DebugModes != nil {
			r.DebugModes = slices.Clone(r.DebugModes)
		}
		out[n] = r
	}
	writeJSON(k.w, http.StatusOK, out)
	return nil
}
