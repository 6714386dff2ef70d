package ledgercheck

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
	"github.com/dsplab/dsplab/platform-api/internal/distributor"
)

// The checker against the real pipeline: the real distributor and analyzer
// binaries (devstack) on devkafka, the platform's own client switching the
// analyzer's delivery mode through the distributor's /admin/analyzers and
// the analyzer's real /admin/delivery, and a real kill -9 of the analyzer
// process. The broker is kfake (devkafka), a stand-in for Kafka.

// ingest posts n packets named "<job>-1-<i>" with 8 senders; it returns how
// many were answered 202.
func ingest(t *testing.T, url, job string, n int) int64 {
	var accepted atomic.Int64
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				body := fmt.Sprintf(`{"emitter_id":"e","packet_id":"%s-1-%d","messages":[{"level":"info","message":"m"}]}`, job, i)
				resp, err := http.Post(url+"/ingest", "application/json", strings.NewReader(body))
				if err != nil {
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return accepted.Load()
}

func checkJob(t *testing.T, s *devstack.Stack, job string, since time.Time) Result {
	c := New(Config{Brokers: []string{s.KafkaAddr}, LogsPrefix: "logs.", LedgerTopic: "ledger.processed", MaxRecords: 100000, Timeout: 2 * time.Minute, Quiet: 15 * time.Second})
	r := c.Check(t.Context(), []string{job}, since, nil)
	require.True(t, r.Complete(), "%+v", r)
	t.Logf("%s: written %d, processed %d, duplicates %d (redelivered %d), lost %d, unexpected %d, unreadable %d, %d records, waited %.1fs",
		job, r.Written, r.Processed, r.Duplicates, r.Redelivered, r.Lost, r.Unexpected, r.Unreadable, r.RecordsRead, r.WaitedSeconds)
	return r
}

func TestTheCheckerReadsTheRealPipelinesLedgerAcrossAKill9InEachMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the pipeline's binaries")
	}
	bins, err := devstack.Build(t.TempDir())
	require.NoError(t, err)
	// One analyzer, a little slow, so that a kill finds work in flight; its
	// run-time mode kept in a file, as compose keeps it, across the restart.
	s := devstack.Start(t, bins, devstack.Options{Weights: []float64{1},
		AnalyzerEnv: []string{"PROCESSING_DELAY_MS=3", "DELIVERY_STATE_FILE=" + filepath.Join(t.TempDir(), "mode"), "KAFKA_SESSION_TIMEOUT_MS=6000"}})
	admin := distributor.New(s.Distributor.URL(), "")
	since := time.Now().Add(-time.Minute)

	// Undisturbed: every packet written once and processed once.
	accepted := ingest(t, s.Distributor.URL(), "t-clean", 300)
	r := checkJob(t, s, "t-clean", since)
	require.EqualValues(t, accepted, r.Written)
	require.Equal(t, Counts{Written: r.Written, Processed: r.Written, Processings: r.Written}, r.Counts)

	for _, tc := range []struct {
		mode  string
		check func(t *testing.T, r Result)
	}{
		{"at-most-once", func(t *testing.T, r Result) {
			require.Positive(t, r.Lost, "what was committed and not processed when killed")
			require.Zero(t, r.Duplicates)
			require.Len(t, r.Examples.Lost, min(int(r.Lost), MaxExamples))
			require.Equal(t, "logs.analyzer-1", r.Examples.Lost[0].Written[0].Topic)
		}},
		{"at-least-once", func(t *testing.T, r Result) {
			require.Zero(t, r.Lost)
			require.Positive(t, r.Duplicates, "what was processed after the last commit, processed again")
			require.Equal(t, r.Duplicates, r.Redelivered, "the same records again, not copies")
		}},
		{"effectively-once", func(t *testing.T, r Result) {
			require.Zero(t, r.Lost)
			require.Zero(t, r.Duplicates)
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			require.NoError(t, admin.SetDeliveryMode(t.Context(), "analyzer-1", tc.mode))
			got, err := admin.DeliveryMode(t.Context(), "analyzer-1")
			require.NoError(t, err)
			require.Equal(t, tc.mode, got)
			job := "t-" + strings.ReplaceAll(tc.mode, "-", "")
			// The previous round's backlog done first: the kill must find
			// this round's packets in flight.
			devstack.Eventually(t, time.Minute, func() bool { return stat(s.Analyzers[0].URL(), "consumer_lag") == 0 }, "the backlog did not drain")
			base := stat(s.Analyzers[0].URL(), "packets_processed")
			done := make(chan int64)
			go func() { done <- ingest(t, s.Distributor.URL(), job, 1500) }()
			// Kill once the analyzer is busy with this job's packets (a
			// backlog of them waits: each takes 3 ms).
			devstack.Eventually(t, 30*time.Second, func() bool { return stat(s.Analyzers[0].URL(), "packets_processed") >= base+100 }, "no processing")
			s.Analyzers[0].Kill()
			accepted := <-done
			require.NoError(t, s.Analyzers[0].Start())
			devstack.Eventually(t, 30*time.Second, func() bool {
				resp, err := http.Get(s.Analyzers[0].URL() + "/health")
				if err == nil {
					resp.Body.Close()
				}
				return err == nil && resp.StatusCode == http.StatusOK
			}, "the analyzer is not back")
			got, err = admin.DeliveryMode(t.Context(), "analyzer-1")
			require.NoError(t, err)
			require.Equal(t, tc.mode, got, "the run-time mode survived the kill")
			r := checkJob(t, s, job, since)
			require.EqualValues(t, accepted, r.Written, "every 202 is in logs.*")
			require.Zero(t, r.Unexpected)
			require.Zero(t, r.Unreadable)
			tc.check(t, r)
		})
	}
}

// stat is a number of the analyzer's /stats (-1 when it does not answer).
func stat(url, key string) int {
	resp, err := http.Get(url + "/stats")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	n := -1
	if i := strings.Index(b.String(), `"`+key+`":`); i >= 0 {
		fmt.Sscanf(b.String()[i+len(key)+3:], "%d", &n)
	}
	return n
}
