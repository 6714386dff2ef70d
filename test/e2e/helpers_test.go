//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/prom"
)

var promc = prom.New(promURL)

// call sends a JSON request to the platform API and decodes the answer
// into out (if not nil); it returns the status.
func call(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, platformURL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		require.NoError(t, json.Unmarshal(b, out), "%s %s: %s", method, path, b)
	}
	if resp.StatusCode/100 != 2 {
		t.Logf("%s %s → %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// scrape reads one Prometheus text exposition into "name{labels}" → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// analyzerUp is the distributor's own view, read straight from its
// /metrics (Prometheus lags by up to an export plus a scrape interval).
func analyzerUp(t *testing.T, analyzer string) bool {
	return scrape(t, distribURL+"/metrics")[`distributor_analyzer_up{analyzer="`+analyzer+`"}`] == 1
}

// waitFor polls cond every 100 ms until it holds or within passes, and
// returns how long it took.
func waitFor(t *testing.T, within time.Duration, cond func() bool, what string) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// sleepUntil waits for a point in time.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }

// shares are the analyzers' shares of routed messages between two sample
// times, from the distributor's counters as Prometheus stored them (the
// collector's exporter, scraped every 5 s), counted exactly.
func shares(t *testing.T, from, to time.Time) map[string]float64 {
	t.Helper()
	series, err := promc.Range(context.Background(), "distributor_routed_messages_total", time.Since(from)+2*time.Minute)
	require.NoError(t, err)
	inc, total := map[string]float64{}, 0.0
	for _, s := range series {
		var in []prom.Sample
		for _, x := range s.Samples {
			if !x.T.After(to) {
				in = append(in, x)
			}
		}
		v := prom.CounterIncrease(in, from)
		inc[s.Labels["analyzer"]] += v
		total += v
	}
	require.Positive(t, total, "no messages routed between %s and %s", from.Format(time.TimeOnly), to.Format(time.TimeOnly))
	out := map[string]float64{}
	for a, v := range inc {
		out[a] = v / total
	}
	t.Logf("shares %s–%s: analyzer-1 %.1f%%, analyzer-2 %.1f%%, analyzer-3 %.1f%% of %.0f messages",
		from.Format("15:04:05"), to.Format("15:04:05"), 100*out["analyzer-1"], 100*out["analyzer-2"], 100*out["analyzer-3"], total)
	return out
}

func requireShares(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for a, w := range want {
		require.InDelta(t, w, got[a], 0.05, "%s's share (±5 points)", a)
	}
}

// increase is the exact growth of a counter since a time, from Prometheus.
func increase(t *testing.T, selector string, since time.Time) float64 {
	t.Helper()
	v, ok, err := promc.Increase(context.Background(), selector, since)
	require.NoError(t, err)
	require.True(t, ok, "%s: no series in Prometheus", selector)
	return v
}

// promHas says whether an instant query returns anything.
func promHas(t *testing.T, q string) bool {
	t.Helper()
	_, ok, err := promc.Query(context.Background(), q)
	require.NoError(t, err, q)
	return ok
}

// outage finds, in Prometheus's samples of the distributor's
// distributor_analyzer_up for an analyzer, the first run of zeros after a
// time, and returns the sample times of its first and last zero and of the
// first one after it. The gauge and the routing counters travel in the same
// OTLP export, so counters between the first and last zero sample cover
// only the outage as the distributor saw it, however late the export and
// the scrape are. It waits up to within for the run to end in Prometheus.
func outage(t *testing.T, analyzer string, after time.Time, within time.Duration) (first, last, back time.Time) {
	t.Helper()
	waitFor(t, within, func() bool {
		series, err := promc.Range(context.Background(), `distributor_analyzer_up{analyzer="`+analyzer+`"}`, time.Since(after)+time.Minute)
		require.NoError(t, err)
		first, last, back = time.Time{}, time.Time{}, time.Time{}
		for _, s := range series {
			for _, x := range s.Samples {
				switch {
				case !x.T.After(after):
				case x.V == 0 && back.IsZero():
					if first.IsZero() {
						first = x.T
					}
					last = x.T
				case x.V == 1 && !first.IsZero() && back.IsZero():
					back = x.T
				}
			}
		}
		return !back.IsZero()
	}, analyzer+"'s outage, whole, in Prometheus")
	require.True(t, last.After(first), "%s: one zero sample only (%s)", analyzer, first)
	t.Logf("%s down in Prometheus's samples %s–%s, up again at %s", analyzer, first.Format("15:04:05"), last.Format("15:04:05"), back.Format("15:04:05"))
	return first, last, back
}

// upWatch records when the distributor (its own /metrics, polled every
// 100 ms) first saw an analyzer down and then up again, so subtests that
// wait for something else in between still get exact times.
type upWatch struct {
	mu       sync.Mutex
	down, up time.Time
	stop     chan struct{}
}

func watchUp(t *testing.T, analyzer string) *upWatch {
	w := &upWatch{stop: make(chan struct{})}
	t.Cleanup(func() { close(w.stop) })
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			resp, err := http.Get(distribURL + "/metrics")
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			isUp := bytes.Contains(b, []byte(`distributor_analyzer_up{analyzer="`+analyzer+`"} 1`))
			w.mu.Lock()
			switch {
			case !isUp && w.down.IsZero():
				w.down = time.Now()
			case isUp && !w.down.IsZero() && w.up.IsZero():
				w.up = time.Now()
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// wait returns the time of the down (or up) transition once seen.
func (w *upWatch) wait(t *testing.T, up bool, within time.Duration) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, within, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		at = w.down
		if up {
			at = w.up
		}
		return !at.IsZero()
	}, fmt.Sprintf("the distributor sees the analyzer up=%v", up))
	return at
}

// alertWatch records when Alertmanager (its API, polled every 250 ms)
// first held an alert. The alert of a 15 s outage resolves soon after the
// analyzer is back, and Alertmanager's API lists active alerts only, so a
// look after the outage would race the resolution: the watch runs from
// the fault on.
type alertWatch struct {
	mu   sync.Mutex
	seen time.Time
	stop chan struct{}
}

// watchAlert polls Alertmanager for an alert whose labels include match.
func watchAlert(t *testing.T, alertname string, match map[string]string) *alertWatch {
	w := &alertWatch{stop: make(chan struct{})}
	t.Cleanup(func() { close(w.stop) })
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			resp, err := http.Get(alertmgrURL + "/api/v2/alerts?filter=alertname%3D%22" + alertname + "%22")
			if err != nil {
				continue
			}
			var alerts []struct {
				Labels map[string]string `json:"labels"`
			}
			err = json.NewDecoder(resp.Body).Decode(&alerts)
			resp.Body.Close()
			if err != nil {
				continue
			}
			for _, a := range alerts {
				ok := true
				for k, v := range match {
					ok = ok && a.Labels[k] == v
				}
				if ok {
					w.mu.Lock()
					if w.seen.IsZero() {
						w.seen = time.Now()
					}
					w.mu.Unlock()
				}
			}
		}
	}()
	return w
}

// wait returns when Alertmanager first held the alert.
func (w *alertWatch) wait(t *testing.T, within time.Duration) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, within, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		at = w.seen
		return !at.IsZero()
	}, "Alertmanager holds the alert")
	return at
}
