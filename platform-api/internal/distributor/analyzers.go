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
