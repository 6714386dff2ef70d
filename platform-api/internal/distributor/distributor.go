// Package distributor is the platform's client of the distributor's admin
// API: the run-time configuration overlay (GET/PUT/DELETE /admin/config),
// a hot reload of limits, weights, routing and Kafka settings.
package distributor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client talks to one distributor.
type Client struct {
	url   string
	token string
	// analyzerToken is sent to the analyzers' admin API.
	analyzerToken string
	hc            *http.Client
}

// New returns a client of the distributor at url (http://distributor:8080).
// A token (the distributor's ADMIN_TOKEN) is sent as a bearer token with
// every request; empty sends none.
func New(url, token string) *Client {
	return &Client{url: strings.TrimRight(url, "/"), token: token, hc: &http.Client{Timeout: 10 * time.Second}}
}

// WithAnalyzerToken sets the bearer token sent to the analyzers' admin
// API (their ADMIN_TOKEN; empty sends none).
func (c *Client) WithAnalyzerToken(token string) *Client {
	c.analyzerToken = token
	return c
}

// URL is the distributor's base URL.
func (c *Client) URL() string { return c.url }

// Error is a refusal by the distributor: its status and message.
type Error struct {
	From    string // "distributor", "analyzer analyzer-2"
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s answered %d: %s", e.From, e.Status, e.Message)
}

// Overlay returns the overlay in force ("" if none).
func (c *Client) Overlay(ctx context.Context) (string, error) {
	var out struct {
		Overlay string `json:"overlay"`
	}
	if err := c.do(ctx, http.MethodGet, nil, &out); err != nil {
		return "", err
	}
	return out.Overlay, nil
}

// SetOverlay replaces the overlay (YAML or JSON) and so reloads the
// distributor's configuration; an empty overlay clears it. A refused
// overlay is an *Error with the distributor's reasons.
func (c *Client) SetOverlay(ctx context.Context, overlay []byte) error {
	if len(bytes.TrimSpace(overlay)) == 0 {
		return c.do(ctx, http.MethodDelete, nil, nil)
	}
	return c.do(ctx, http.MethodPut, overlay, nil)
}

func (c *Client) do(ctx context.Context, method string, body []byte, out any) error {
	return c.call(ctx, "distributor", c.url, "/admin/config", c.token, method, body, out)
}

// call sends one admin request to who (the distributor, an analyzer) at
// base+path.
func (c *Client) call(ctx context.Context, who, base, path, token, method string, body []byte, out any) error {
	url := base + path
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	// The distributor refuses a write without one of its types, body or
	// not (its admin routes must not be drivable by a web page).
	switch {
	case body != nil && path == "/admin/config":
		req.Header.Set("Content-Type", "application/yaml") // a YAML or JSON document
	case body != nil:
		req.Header.Set("Content-Type", "application/json")
	case method != http.MethodGet:
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s at %s: %w", who, base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &Error{From: who, Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
