package distributor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Analyzers are reached at the URLs the distributor routes to: its
// GET /admin/analyzers lists each analyzer's id and url, so the platform
// needs no list of its own (in compose, http://analyzer-2:9002).

// AnalyzerURL returns the base URL of the analyzer with this id.
func (c *Client) AnalyzerURL(ctx context.Context, id string) (string, error) {
	var out struct {
		Analyzers []struct {
			ID  string `json:"id"`
			URL string `json:"url"`
		} `json:"analyzers"`
	}
	if err := c.call(ctx, "distributor", c.url, "/admin/analyzers", c.token, http.MethodGet, nil, &out); err != nil {
		return "", err
	}
	for _, a := range out.Analyzers {
		if a.ID == id {
			return a.URL, nil
		}
	}
	return "", fmt.Errorf("the distributor routes to no analyzer %q", id)
}

// deliveryBody is the analyzer's GET and PUT /admin/delivery.
type deliveryBody struct {
	Mode string `json:"mode"`
}

// DeliveryMode reads an analyzer's delivery mode (GET /admin/delivery).
func (c *Client) DeliveryMode(ctx context.Context, analyzer string) (string, error) {
	base, err := c.AnalyzerURL(ctx, analyzer)
	if err != nil {
		return "", err
	}
	var out deliveryBody
	if err := c.call(ctx, "analyzer "+analyzer, base, "/admin/delivery", c.analyzerToken, http.MethodGet, nil, &out); err != nil {
		return "", err
	}
	return out.Mode, nil
}

// SetDeliveryMode switches an analyzer's delivery mode at run time (PUT
// /admin/delivery); the analyzer refuses an unknown mode (an *Error).
func (c *Client) SetDeliveryMode(ctx context.Context, analyzer, mode string) error {
	base, err := c.AnalyzerURL(ctx, analyzer)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(deliveryBody{Mode: mode})
	return c.call(ctx, "analyzer "+analyzer, base, "/admin/delivery", c.analyzerToken, http.MethodPut, body, nil)
}

// processingBody is the analyzer's GET and PUT /admin/processing.
type processingBody struct {
	DelayMs float64 `json:"delay_ms"`
}

// ProcessingDelay reads an analyzer's per-packet processing delay in
// milliseconds (GET /admin/processing).
func (c *Client) ProcessingDelay(ctx context.Context, analyzer string) (float64, error) {
	base, err := c.AnalyzerURL(ctx, analyzer)
	if err != nil {
		return 0, err
	}
	var out processingBody
	if err := c.call(ctx, "analyzer "+analyzer, base, "/admin/processing", c.analyzerToken, http.MethodGet, nil, &out); err != nil {
		return 0, err
	}
	return out.DelayMs, nil
}

// SetProcessingDelay sets an analyzer's per-packet processing delay at run
// time (PUT /admin/processing); the analyzer refuses one out of its range
// (an *Error).
func (c *Client) SetProcessingDelay(ctx context.Context, analyzer string, ms float64) error {
	base, err := c.AnalyzerURL(ctx, analyzer)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(processingBody{DelayMs: ms})
	return c.call(ctx, "analyzer "+analyzer, base, "/admin/processing", c.analyzerToken, http.MethodPut, body, nil)
}
