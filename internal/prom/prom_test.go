package prom

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The server stands in for Prometheus's HTTP API (/api/v1/query); the e2e
// suite uses the client against the real Prometheus.
func TestQueryGivesScalarsVectorsAndEmptyResults(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/api/v1/query", r.URL.Path)
		switch r.URL.Query().Get("query") {
		case "up":
			io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"x"},"value":[1700000000.1,"3"]}]}}`)
		case "scalar(1)":
			io.WriteString(w, `{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"1"]}}`)
		case "up < 0":
			io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
		default:
			w.WriteHeader(400)
			io.WriteString(w, `{"status":"error","errorType":"bad_data","error":"parse error"}`)
		}
	}))
	defer srv.Close()
	p := New(srv.URL)
	v, ok, err := p.Query(context.Background(), "up")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 3.0, v)
	v, ok, err = p.Query(context.Background(), "scalar(1)")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 1.0, v)
	_, ok, err = p.Query(context.Background(), "up < 0")
	require.NoError(t, err)
	require.False(t, ok)
	_, _, err = p.Query(context.Background(), "up{")
	require.ErrorContains(t, err, "bad_data")
}

func TestIncreaseCountsExactlyAcrossRestartsAndNewSeries(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Regexp(t, `^c\[\d+s\]$`, r.URL.Query().Get("query"))
		// a: 10 before since, then 25, a restart (4), 9: 15 + 9 = 24.
		// b: first seen after since at 7, then 8: 8.
		io.WriteString(w, `{"status":"success","data":{"resultType":"matrix","result":[
			{"metric":{"s":"a"},"values":[[100,"3"],[105,"10"],[115,"25"],[120,"4"],[125,"9"]]},
			{"metric":{"s":"b"},"values":[[120,"7"],[125,"8"]]}]}}`)
	}))
	defer srv.Close()
	v, ok, err := New(srv.URL).Increase(context.Background(), "c", time.Unix(110, 0))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 32.0, v)
}

func TestCounterIncreaseIsZeroWithoutSamplesAfterSince(t *testing.T) {
	s := []Sample{{time.Unix(1, 0), 5}, {time.Unix(2, 0), 6}}
	require.Zero(t, CounterIncrease(s, time.Unix(2, 0)))
	require.Equal(t, 1.0, CounterIncrease(s, time.Unix(1, 0)))
	require.Equal(t, 6.0, CounterIncrease(s, time.Unix(0, 0)))
}
