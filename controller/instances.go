package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/store"
)

// gather sends a request and collects up to want replies (0 = any number)
// until the timeout.
func (c *Controller) gather(ctx context.Context, subject string, req any, want int) ([][]byte, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", subject, err)
	}
	inbox := c.deps.Bus.NewInbox()
	ch := make(chan []byte, 256)
	sub, err := c.deps.Bus.Subscribe(inbox, func(m *bus.Msg) {
		select {
		case ch <- m.Data:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", inbox, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.deps.Bus.PublishRequest(subject, inbox, data); err != nil {
		return nil, fmt.Errorf("request %s: %w", subject, err)
	}
	t := time.NewTimer(c.cfg.FindTimeout)
	defer t.Stop()
	var out [][]byte
	for want <= 0 || len(out) < want {
		select {
		case b := <-ch:
			out = append(out, b)
		case <-t.C:
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

// find collects dea.find.droplet replies.
func (c *Controller) find(ctx context.Context, q protocol.FindDroplet, want int) []protocol.FindDropletReply {
	raw, _ := c.gather(ctx, protocol.DEAFindDroplet, q, want)
	var out []protocol.FindDropletReply
	for _, b := range raw {
		r, err := protocol.Decode[protocol.FindDropletReply](b)
		if err == nil && string(r.Droplet) == string(q.Droplet) {
			out = append(out, r)
		}
	}
	return out
}

type instanceJSON struct {
	Index       int     `json:"index"`
	State       string  `json:"state"`
	Since       float64 `json:"since"`
	DebugIP     *string `json:"debug_ip"`
	DebugPort   *int    `json:"debug_port"`
	ConsoleIP   *string `json:"console_ip"`
	ConsolePort *int    `json:"console_port"`
	// kiln extensions.
	Instance string `json:"instance_id,omitempty"`
	Host     string `json:"host,omitempty"`
	Port     int    `json:"port,omitempty"`
}

// instances is GET /apps/:name/instances.
func (c *Controller) instances(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	out := []instanceJSON{}
	if a.State != store.AppStarted {
		writeJSON(k.w, http.StatusOK, map[string]any{"instances": out})
		return nil
	}
	ctx := k.r.Context()
	flapping := c.flappingIndices(ctx, a)
	byIndex := map[int]instanceJSON{}
	for i, since := range flapping {
		byIndex[i] = instanceJSON{Index: i, State: protocol.StateFlapping, Since: float64(since)}
	}
	q := protocol.FindDroplet{InstanceFilter: protocol.InstanceFilter{Droplet: protocol.AppID(a.ID), Version: a.Version, States: []string{protocol.StateStarting, protocol.StateRunning}}}
	for _, r := range c.find(ctx, q, a.Instances-len(flapping)) {
		if r.Index < 0 || r.Index >= a.Instances {
			continue
		}
		if _, ok := byIndex[r.Index]; ok && byIndex[r.Index].State == protocol.StateRunning {
			continue
		}
		byIndex[r.Index] = instanceJSON{Index: r.Index, State: r.State, Since: r.StateTimestamp, Instance: r.Instance, Host: r.Host, Port: r.Port}
	}
	now := float64(c.now().Unix())
	for i := 0; i < a.Instances; i++ {
		v, ok := byIndex[i]
		if !ok {
			v = instanceJSON{Index: i, State: protocol.StateDown, Since: now}
		}
		out = append(out, v)
	}
	writeJSON(k.w, http.StatusOK, map[string]any{"instances": out})
	return nil
}

// flappingIndices asks the health manager for FLAPPING indices.
func (c *Controller) flappingIndices(ctx context.Context, a store.App) map[int]int64 {
	out := map[int]int64{}
	raw, _ := c.gather(ctx, protocol.HealthManagerStatus, protocol.HMStatusRequest{Droplet: protocol.AppID(a.ID), Version: a.Version, State: protocol.StateFlapping}, 1)
	for _, b := range raw {
		var r protocol.HMStatusReply
		if json.Unmarshal(b, &r) == nil {
			for _, is := range r.Indices {
				if is.Index >= 0 && is.Index < a.Instances {
					out[is.Index] = is.Since
				}
			}
		}
	}
	return out
}

// stats is GET /apps/:name/stats.
func (c *Controller) stats(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	out := map[string]any{}
	if a.State != store.AppStarted {
		writeJSON(k.w, http.StatusOK, out)
		return nil
	}
	q := protocol.FindDroplet{InstanceFilter: protocol.InstanceFilter{Droplet: protocol.AppID(a.ID), Version: a.Version, States: []string{protocol.StateRunning}}, IncludeStats: true}
	for _, r := range c.find(k.r.Context(), q, a.Instances) {
		if r.Index < 0 || r.Index >= a.Instances {
			continue
		}
		out[strconv.Itoa(r.Index)] = map[string]any{"state": r.State, "stats": r.Stats}
	}
	now := c.now().Unix()
	for i := 0; i < a.Instances; i++ {
		if _, ok := out[strconv.Itoa(i)]; !ok {
			out[strconv.Itoa(i)] = map[string]any{"state": protocol.StateDown, "since": now}
		}
	}
	writeJSON(k.w, http.StatusOK, out)
	return nil
}

// crashes is GET /apps/:name/crashes: the health manager's crashed
// instances, else the controller's own crash records.
func (c *Controller) crashes(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	ctx := k.r.Context()
	out := []protocol.InstanceSince{}
	seen := map[string]bool{}
	raw, _ := c.gather(ctx, protocol.HealthManagerStatus, protocol.HMStatusRequest{Droplet: protocol.AppID(a.ID), State: protocol.StateCrashed}, 1)
	for _, b := range raw {
		var r protocol.HMStatusReply
		if json.Unmarshal(b, &r) == nil {
			for _, is := range r.Instances {
				if !seen[is.Instance] {
					seen[is.Instance] = true
					out = append(out, is)
				}
			}
		}
	}
	page, err := c.deps.Store.ListCrashes(ctx, a.ID, time.Time{}, store.ListOptions{Limit: store.MaxLimit})
	if err != nil {
		return fmt.Errorf("list crashes: %w", err)
	}
	for _, cr := range page.Items {
		if !seen[cr.InstanceID] {
			seen[cr.InstanceID] = true
			out = append(out, protocol.InstanceSince{Instance: cr.InstanceID, Since: cr.Time.Unix()})
		}
	}
	writeJSON(k.w, http.StatusOK, map[string]any{"crashes": out})
	return nil
}

// files is GET /apps/:name/instances/:index/files/*path, proxied to the
// DEA's file server.
func (c *Controller) files(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	if a.State != store.AppStarted {
		return ErrAppStopped
	}
	id, p := k.param("index"), k.param("path")
	if strings.Contains("/"+p+"/", "/../") {
		return ErrFileNotFound.with(clip(p))
	}
	q := protocol.FindDroplet{InstanceFilter: protocol.InstanceFilter{Droplet: protocol.AppID(a.ID)}}
	if n, err := strconv.Atoi(id); err == nil {
		if n < 0 || n >= a.Instances {
			return ErrInstanceNotFound.with(clip(id))
		}
		q.Version = a.Version
		q.Indices = []int{n}
		q.States = []string{protocol.StateStarting, protocol.StateRunning, protocol.StateCrashed}
	} else {
		q.Instances = []string{id}
	}
	replies := c.find(k.r.Context(), q, 1)
	if len(replies) == 0 || replies[0].FileURI == "" {
		return ErrInstanceNotFound.with(clip(id))
	}
	r := replies[0]
	target := fileURL(r, p)
	ctx, cancel := context.WithTimeout(k.r.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return ErrFileError.with(clip(p))
	}
	if len(r.Credentials) == 2 {
		req.SetBasicAuth(r.Credentials[0], r.Credentials[1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return ErrFileError.with(clip(p))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return ErrFileNotFound.with(clip(p))
	case resp.StatusCode != http.StatusOK:
		return ErrFileError.with(clip(p))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		k.w.Header().Set("Content-Type", ct)
	}
	k.w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(k.w, resp.Body)
	return nil
}

// fileURL joins a find reply's file_uri with a path. The original DEA's
// file_uri is a prefix to which "<staged>/<path>" is added; a kiln DEA's
// already names the instance.
func fileURL(r protocol.FindDropletReply, p string) string {
	base := r.FileURI
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	if r.Staged != "" && !strings.Contains(base, "/"+r.Staged+"/") {
		base += url.PathEscape(r.Staged) + "/"
	}
	segs := strings.Split(strings.Trim(p, "/"), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	rel := strings.Join(segs, "/")
	if strings.HasSuffix(p, "/") && rel != "" {
		rel += "/"
	}
	return base + rel
}

// appLog publishes a controller line on the app's log.
func (c *Controller) appLog(appID string, index int, line string) {
	c.publish(protocol.LogSubject(protocol.AppID(appID)), protocol.LogLine{App: protocol.AppID(appID), Index: index, Source: "API", Timestamp: c.now().UnixNano(), Line: line})
}
