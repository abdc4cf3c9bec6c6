package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/kiln-paas/kiln/controller/client"
)

// rawCall makes a JSON call the client package has no method for (the
// app's health check fields, events), with the client's token, returning
// failures as *client.Error like the client does.
func (k *cli) rawCall(ctx context.Context, cl *client.Client, method string, segs []string, in, out any) error {
	u := k.currentTarget()
	for _, s := range segs {
		u += "/" + url.PathEscape(s)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if t := cl.Token(); t != "" {
		req.Header.Set("Authorization", t)
	}
	resp, err := k.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	if resp.StatusCode >= 400 {
		e := &client.Error{Status: resp.StatusCode}
		var eb struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		}
		if json.Unmarshal(b, &eb) == nil {
			e.Code, e.Description = eb.Code, eb.Description
		}
		return e
	}
	if out == nil || len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode: %w", method, strings.TrimPrefix(u, k.currentTarget()), err)
	}
	return nil
}

// healthCheck is the part of an app the client package does not carry.
type healthCheck struct {
	Type     *string `json:"health_check_type,omitempty"`
	Endpoint *string `json:"health_check_http_endpoint,omitempty"`
	// Timeout is in seconds.
	Timeout *int `json:"health_check_timeout,omitempty"`
}

func (h healthCheck) empty() bool { return h.Type == nil && h.Endpoint == nil && h.Timeout == nil }

// setHealthCheck updates the app's health check settings.
func (k *cli) setHealthCheck(ctx context.Context, cl *client.Client, name string, h healthCheck) error {
	if h.empty() {
		return nil
	}
	return k.rawCall(ctx, cl, "PUT", []string{"apps", name}, h, nil)
}
