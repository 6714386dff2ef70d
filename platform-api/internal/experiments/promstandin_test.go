package experiments

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// promStandIn is a STAND-IN for Prometheus's range query API, for the
// report tests: GET /api/v1/query_range with query, start, end and step,
// answering from a script (values as a function of the query and the
// time). It is not Prometheus and evaluates no PromQL.
//
// Compared with the real Prometheus (Debian's 2.42, the e2e stack's, run
// by TestChartsFromTheRealPrometheus on the same code path) and with its
// HTTP API documentation (docs/querying/api.md, "Range queries"):
//   - the answer is {"status":"success","data":{"resultType":"matrix",
//     "result":[{"metric":{...},"values":[[<unix seconds>,"<value>"],...]}]}}
//     with the value a string and the time a JSON number of seconds;
//   - the evaluation times are start, start+step, ... up to end; a series
//     with no value at a step has no pair there (no null);
//   - a function result's metric has no __name__;
//   - a missing or unparsable parameter is 400 {"status":"error",
//     "errorType":"bad_data","error":"..."}, and more than 11,000 steps is
//     400 bad_data "exceeded maximum resolution of 11,000 points per
//     timeseries. Try decreasing the query resolution (?step=XX)";
//   - NaN is written "NaN", as the real one does for 0/0.
//
// It answers what the script says without lookback or staleness: that is
// PromQL's business, which the real-Prometheus test covers.
type promStandIn struct {
	*httptest.Server
	// script gives each series' value at t, by its one label as
	// "name=value" ("" for a series without labels).
	script func(q string, t time.Time) map[string]float64

	// exemplars answer GET /api/v1/query_exemplars (any query), as the
	// real one does: grouped by series, values as strings, times as
	// numbers (docs/querying/api.md, "Querying exemplars").
	exemplars []standInExemplar

	mu      sync.Mutex
	queries []string
}

type standInExemplar struct {
	traceID string
	at      time.Time
	value   float64
}

func newPromStandIn(t *testing.T, script func(q string, t time.Time) map[string]float64) *promStandIn {
	p := &promStandIn{script: script}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *promStandIn) bad(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": "bad_data", "error": msg})
}

func (p *promStandIn) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/api/v1/query_exemplars" {
		var ex []string
		for _, e := range p.exemplars {
			ex = append(ex, fmt.Sprintf(`{"labels":{"span_id":"00f067aa0ba902b7","trace_id":%q},"value":%q,"timestamp":%s}`,
				e.traceID, strconv.FormatFloat(e.value, 'f', -1, 64), strconv.FormatFloat(float64(e.at.UnixMilli())/1000, 'f', -1, 64)))
		}
		data := "[]"
		if len(ex) > 0 {
			data = `[{"seriesLabels":{"__name__":"distributor_request_duration_seconds_bucket","le":"0.25"},"exemplars":[` + strings.Join(ex, ",") + `]}]`
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":%s}`, data)
		return
	}
	if r.URL.Path != "/api/v1/query_range" {
		http.NotFound(w, r)
		return
	}
	q := r.FormValue("query")
	start, err1 := strconv.ParseFloat(r.FormValue("start"), 64)
	end, err2 := strconv.ParseFloat(r.FormValue("end"), 64)
	step, err3 := strconv.ParseFloat(r.FormValue("step"), 64)
	switch {
	case q == "":
		p.bad(w, `invalid parameter "query": unknown position: parse error: no expression found in input`)
		return
	case err1 != nil || err2 != nil:
		p.bad(w, `invalid parameter "start": cannot parse to a valid timestamp`)
		return
	case err3 != nil || step <= 0:
		p.bad(w, `invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer`)
		return
	case (end-start)/step > 11000:
		p.bad(w, "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")
		return
	}
	p.mu.Lock()
	p.queries = append(p.queries, q)
	p.mu.Unlock()
	values := map[string][]string{}
	for ms := int64(math.Round(start * 1000)); ms <= int64(math.Round(end*1000)); ms += int64(math.Round(step * 1000)) {
		for name, v := range p.script(q, time.UnixMilli(ms)) {
			ts := strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)
			values[name] = append(values[name], fmt.Sprintf("[%s,%q]", ts, strconv.FormatFloat(v, 'f', -1, 64)))
		}
	}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	var result []string
	for _, n := range names {
		metric := "{}"
		if k, v, ok := strings.Cut(n, "="); ok {
			metric = fmt.Sprintf(`{%q:%q}`, k, v)
		}
		result = append(result, fmt.Sprintf(`{"metric":%s,"values":[%s]}`, metric, strings.Join(values[n], ",")))
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"matrix","result":[%s]}}`, strings.Join(result, ","))
}
