package experiments

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Prometheus evaluates instant queries through Prometheus's HTTP API.
type Prometheus struct {
	URL    string
	client *http.Client
}

// NewPrometheus returns a client for the Prometheus at url.
func NewPrometheus(url string) *Prometheus {
	return &Prometheus{URL: strings.TrimSuffix(url, "/"), client: &http.Client{Timeout: 10 * time.Second}}
}

// Query evaluates q now. It returns the value of a scalar or of the first
// sample of a vector; present is false for an empty vector (a PromQL
// filter that matched nothing).
func (p *Prometheus) Query(ctx context.Context, q string) (value float64, present bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, false, fmt.Errorf("prometheus: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, false, fmt.Errorf("prometheus: %s: %w", resp.Status, err)
	}
	if body.Status != "success" {
		return 0, false, fmt.Errorf("prometheus %s: %s", body.ErrorType, body.Error)
	}
	var sample []any
	switch body.Data.ResultType {
	case "scalar":
		if err := json.Unmarshal(body.Data.Result, &sample); err != nil {
			return 0, false, err
		}
	case "vector":
		var vec []struct {
			Value []any `json:"value"`
		}
		if err := json.Unmarshal(body.Data.Result, &vec); err != nil {
			return 0, false, err
		}
		if len(vec) == 0 {
			return 0, false, nil
		}
		sample = vec[0].Value
	default:
		return 0, false, fmt.Errorf("prometheus: %s result: the query must give one number", body.Data.ResultType)
	}
	if len(sample) != 2 {
		return 0, false, fmt.Errorf("prometheus: malformed sample")
	}
	s, _ := sample[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil, err
}
