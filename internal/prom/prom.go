// Package prom is a small client of Prometheus's HTTP API: instant queries
// that give one number, and exact counter increases computed from the raw
// samples (the experiment ledger and the e2e suite need exact counts across
// process restarts, which PromQL's extrapolating increase() cannot give).
package prom

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Prometheus evaluates instant queries through Prometheus's HTTP API.
type Prometheus struct {
	URL    string
	client *http.Client
}

// New returns a client for the Prometheus at url.
func New(url string) *Prometheus {
	return &Prometheus{URL: strings.TrimSuffix(url, "/"), client: &http.Client{Timeout: 10 * time.Second}}
}

// Query evaluates q now. It returns the value of a scalar or of the first
// sample of a vector; present is false for an empty vector (a PromQL
// filter that matched nothing).
func (p *Prometheus) Query(ctx context.Context, q string) (value float64, present bool, err error) {
	body, err := p.query(ctx, q)
	if err != nil {
		return 0, false, err
	}
	var sample []any
	switch body.ResultType {
	case "scalar":
		if err := json.Unmarshal(body.Result, &sample); err != nil {
			return 0, false, err
		}
	case "vector":
		var vec []struct {
			Value []any `json:"value"`
		}
		if err := json.Unmarshal(body.Result, &vec); err != nil {
			return 0, false, err
		}
		if len(vec) == 0 {
			return 0, false, nil
		}
		sample = vec[0].Value
	default:
		return 0, false, fmt.Errorf("prometheus: %s result: the query must give one number", body.ResultType)
	}
	if len(sample) != 2 {
		return 0, false, fmt.Errorf("prometheus: malformed sample")
	}
	s, _ := sample[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil, err
}

type result struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

func (p *Prometheus) query(ctx context.Context, q string) (result, error) {
	return p.get(ctx, "/api/v1/query?query="+url.QueryEscape(q))
}

func (p *Prometheus) get(ctx context.Context, pathAndQuery string) (result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+pathAndQuery, nil)
	if err != nil {
		return result{}, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return result{}, fmt.Errorf("prometheus: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      result `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return result{}, fmt.Errorf("prometheus: %s: %w", resp.Status, err)
	}
	if body.Status != "success" {
		return result{}, fmt.Errorf("prometheus %s: %s", body.ErrorType, body.Error)
	}
	return body.Data, nil
}

// Sample is one raw sample of a series.
type Sample struct {
	T time.Time
	V float64
}

// Series is the raw samples of one series over a range.
type Series struct {
	Labels  map[string]string
	Samples []Sample
}

// Range returns the raw samples of every series that selector (a series
// selector such as analyzer_packets_processed_total{analyzer="a"}) matches
// over the last d, as stored: no evaluation, no extrapolation.
func (p *Prometheus) Range(ctx context.Context, selector string, d time.Duration) ([]Series, error) {
	body, err := p.query(ctx, fmt.Sprintf("%s[%ds]", selector, int(math.Ceil(d.Seconds()))))
	if err != nil {
		return nil, err
	}
	if body.ResultType != "matrix" {
		return nil, fmt.Errorf("prometheus: %s result for a range selector", body.ResultType)
	}
	return matrix(body.Result)
}

// QueryRange evaluates q at every step from start to end (Prometheus's
// GET /api/v1/query_range) and returns one series per label set. NaN and
// ±Inf samples are kept as such (a ratio of two zero rates is NaN).
func (p *Prometheus) QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error) {
	v := url.Values{}
	v.Set("query", q)
	v.Set("start", strconv.FormatFloat(float64(start.UnixMilli())/1000, 'f', 3, 64))
	v.Set("end", strconv.FormatFloat(float64(end.UnixMilli())/1000, 'f', 3, 64))
	v.Set("step", strconv.FormatFloat(step.Seconds(), 'f', -1, 64))
	body, err := p.get(ctx, "/api/v1/query_range?"+v.Encode())
	if err != nil {
		return nil, err
	}
	if body.ResultType != "matrix" {
		return nil, fmt.Errorf("prometheus: %s result for a range query", body.ResultType)
	}
	return matrix(body.Result)
}

// matrix decodes a matrix result: [{"metric":{...},"values":[[t,"v"],...]}].
func matrix(data json.RawMessage) ([]Series, error) {
	var raw []struct {
		Metric map[string]string `json:"metric"`
		Values [][]any           `json:"values"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	out := make([]Series, 0, len(raw))
	for _, r := range raw {
		s := Series{Labels: r.Metric}
		for _, v := range r.Values {
			if len(v) != 2 {
				return nil, fmt.Errorf("prometheus: malformed sample")
			}
			ts, _ := v[0].(float64)
			str, _ := v[1].(string)
			f, err := strconv.ParseFloat(str, 64)
			if err != nil {
				return nil, fmt.Errorf("prometheus: sample %q: %w", str, err)
			}
			s.Samples = append(s.Samples, Sample{T: time.UnixMilli(int64(math.Round(ts * 1000))), V: f})
		}
		out = append(out, s)
	}
	return out, nil
}

// Increase is how much the counters selector matches grew since the given
// time, summed over series, counted exactly from the raw samples: a drop is
// a restart of the process behind the series, after which its whole new
// value counts; a series first seen after since counts from zero. present
// is false when nothing matched. Counts a process made after its last
// export and before a SIGKILL are never exported and so never counted.
func (p *Prometheus) Increase(ctx context.Context, selector string, since time.Time) (total float64, present bool, err error) {
	// A margin before since finds each series' last sample before it.
	series, err := p.Range(ctx, selector, time.Since(since)+2*time.Minute)
	if err != nil {
		return 0, false, err
	}
	for _, s := range series {
		total += CounterIncrease(s.Samples, since)
	}
	return total, len(series) > 0, nil
}

// CounterIncrease is the exact increase of one counter's samples after
// since: the last sample at or before since is the base (zero if there is
// none), and each later sample adds its difference to the one before, or
// its whole value when it is lower (a reset).
func CounterIncrease(samples []Sample, since time.Time) float64 {
	sort.Slice(samples, func(i, j int) bool { return samples[i].T.Before(samples[j].T) })
	prev, inc := 0.0, 0.0
	for _, s := range samples {
		if !s.T.After(since) {
			prev = s.V
			continue
		}
		if s.V >= prev {
			inc += s.V - prev
		} else {
			inc += s.V
		}
		prev = s.V
	}
	return inc
}

// Exemplar is one exemplar of a series: a sampled observation with the
// labels it was recorded with (trace_id, span_id from OpenTelemetry).
type Exemplar struct {
	SeriesLabels map[string]string
	Labels       map[string]string
	Value        float64
	T            time.Time
}

// Exemplars returns the exemplars of the series q selects from start to
// end (GET /api/v1/query_exemplars; Prometheus keeps them in memory only,
// with --enable-feature=exemplar-storage).
func (p *Prometheus) Exemplars(ctx context.Context, q string, start, end time.Time) ([]Exemplar, error) {
	v := url.Values{}
	v.Set("query", q)
	v.Set("start", strconv.FormatFloat(float64(start.UnixMilli())/1000, 'f', 3, 64))
	v.Set("end", strconv.FormatFloat(float64(end.UnixMilli())/1000, 'f', 3, 64))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/api/v1/query_exemplars?"+v.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      []struct {
			SeriesLabels map[string]string `json:"seriesLabels"`
			Exemplars    []struct {
				Labels    map[string]string `json:"labels"`
				Value     string            `json:"value"`
				Timestamp float64           `json:"timestamp"`
			} `json:"exemplars"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("prometheus: %s: %w", resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("prometheus %s: %s", body.ErrorType, body.Error)
	}
	var out []Exemplar
	for _, s := range body.Data {
		for _, e := range s.Exemplars {
			f, err := strconv.ParseFloat(e.Value, 64)
			if err != nil {
				return nil, fmt.Errorf("prometheus: exemplar value %q: %w", e.Value, err)
			}
			out = append(out, Exemplar{SeriesLabels: s.SeriesLabels, Labels: e.Labels, Value: f, T: time.UnixMilli(int64(math.Round(e.Timestamp * 1000)))})
		}
	}
	return out, nil
}
