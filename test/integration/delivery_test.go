package integration

// The three delivery modes under a real kill -9 of a real analyzer process,
// while traffic flows, on the dev stack: the real distributor and analyzer
// binaries and devkafka. devkafka is franz-go's kfake, a Kafka-protocol
// stand-in for Apache Kafka (its group commits and CreateTopics configs
// were compared with Kafka's in /work/notes/ledgeran.md and README
// "Delivery semantics"); the verdict is read from Kafka itself: every
// record of logs.analyzer-1 against every record of ledger.processed.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
	"github.com/dsplab/dsplab/internal/envelope"
	"github.com/dsplab/dsplab/internal/ledger"
)

// verdict compares what the distributor wrote with what was processed.
type verdict struct {
	written, processedUnique, lost, duplicates int
	lostIDs, dupIDs                            []string
}

// readVerdict reads logs.<analyzer> and the ledger's records of analyzer to
// their ends. A delivery is a Kafka record (topic, partition, offset).
func readVerdict(t *testing.T, brokers []string, analyzer string) verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	written := map[ledger.Source]string{}
	require.NoError(t, ledger.Read(ctx, brokers, "logs."+analyzer, time.Time{}, func(m kafka.Message) error {
		env, err := envelope.UnmarshalSummary(m.Value)
		require.NoError(t, err)
		require.Equal(t, env.PacketID, string(m.Key), "the record key is the packet id")
		written[ledger.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}] = env.PacketID
		return nil
	}))
	processed := map[ledger.Source]int{}
	require.NoError(t, ledger.Read(ctx, brokers, ledger.DefaultTopic, time.Time{}, func(m kafka.Message) error {
		r, err := ledger.Decode(m.Value)
		require.NoError(t, err)
		if r.Analyzer == analyzer {
			processed[r.Source()]++
		}
		return nil
	}))
	v := verdict{written: len(written)}
	for src, id := range written {
		switch n := processed[src]; {
		case n == 0:
			v.lost++
			v.lostIDs = append(v.lostIDs, id)
		case n > 1:
			v.duplicates += n - 1
			v.dupIDs = append(v.dupIDs, id)
		}
		if processed[src] > 0 {
			v.processedUnique++
		}
	}
	for src := range processed {
		require.Contains(t, written, src, "a processing of a record never written")
	}
	return v
}

func committedOffset(t *testing.T, brokers []string, group, topic string) int64 {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	resp, err := cl.OffsetFetch(t.Context(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
	if err == nil {
		err = resp.Error
	}
	if errors.Is(err, kafka.GroupIdNotFound) || len(resp.Topics[topic]) == 0 { // not yet committed (kfake: no such group)
		return -1
	}
	require.NoError(t, err)
	return resp.Topics[topic][0].CommittedOffset
}

func endOffset(t *testing.T, brokers []string, topic string) int64 {
	t.Helper()
	conn, err := kafka.DialLeader(t.Context(), "tcp", brokers[0], topic, 0)
	require.NoError(t, err)
	defer conn.Close()
	n, err := conn.ReadLastOffset()
	require.NoError(t, err)
	return n
}

// ledgered returns the offsets of topic the ledger holds a processing of.
func ledgered(t *testing.T, brokers []string, analyzer string) map[int64]bool {
	out := map[int64]bool{}
	require.NoError(t, ledger.Read(t.Context(), brokers, ledger.DefaultTopic, time.Time{}, func(m kafka.Message) error {
		if r, err := ledger.Decode(m.Value); err == nil && r.Analyzer == analyzer {
			out[r.Offset] = true
		}
		return nil
	}))
	return out
}

// traffic posts packets with ids "<prefix>-<worker>-<n>" (the k6 shape)
// until stop is closed; it counts 202s.
func traffic(url, prefix string, workers int, stop <-chan struct{}) (*sync.WaitGroup, *atomic.Int64) {
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; n <= 100000; n++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"emitter_id":"%s-%d","packet_id":"%s-%d-%d","messages":[{"level":"info","message":"m"},{"level":"warn","message":"m"}]}`,
					prefix, w, prefix, w, n)
				req, _ := http.NewRequest(http.MethodPost, url+"/ingest", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					accepted.Add(1)
				} else {
					time.Sleep(20 * time.Millisecond) // the analyzer is down: 503
				}
			}
		}()
	}
	return &wg, &accepted
}

func TestKill9UnderEachDeliveryModeLosesOrDuplicatesAsTheModeSays(t *testing.T) {
	for _, mode := range ledger.Modes {
		t.Run(string(mode), func(t *testing.T) {
			s := devstack.Start(t, bins, devstack.Options{Weights: []float64{1}, AnalyzerEnv: []string{
				"DELIVERY=" + string(mode),
				// Slow processing keeps work in flight when the kill comes,
				// and a long commit interval keeps processed records
				// uncommitted (at-least-once, effectively-once).
				"PROCESSING_DELAY_MS=4", "COMMIT_INTERVAL_MS=1000",
			}})
			brokers := []string{s.KafkaAddr}
			a := s.Analyzers[0]
			stop := make(chan struct{})
			wg, accepted := traffic(s.Distributor.URL(), string(mode), 4, stop)
			defer func() { close(stop); wg.Wait() }()

			// Kill when the mode has something at stake: at-most-once has
			// committed records it has not processed; the others have
			// processed (and recorded) records they have not committed.
			devstack.Eventually(t, 60*time.Second, func() bool {
				c := committedOffset(t, brokers, "analyzer-1", "logs.analyzer-1")
				if c < 0 {
					return false
				}
				done := ledgered(t, brokers, "analyzer-1")
				unprocessed, uncommitted := 0, 0
				for off := int64(0); off < c; off++ {
					if !done[off] {
						unprocessed++
					}
				}
				for off := range done {
					if off >= c {
						uncommitted++
					}
				}
				if mode == ledger.AtMostOnce {
					return unprocessed >= 10
				}
				return uncommitted >= 10
			}, "the analyzer never had work at stake")
			a.Kill()
			killedAt := committedOffset(t, brokers, "analyzer-1", "logs.analyzer-1")
			t.Logf("%s: killed with offset %d committed, %d packets accepted so far", mode, killedAt, accepted.Load())

			time.Sleep(500 * time.Millisecond) // traffic goes on while it is down (503s)
			require.NoError(t, a.Start())
			s.WaitHealthy(t, 1, 30*time.Second)
			time.Sleep(time.Second)
			close(stop)
			wg.Wait()
			stop = make(chan struct{}) // for the deferred close

			// Everything written has been consumed when the group's offset
			// reaches the end of the topic; one more second lets the last
			// ledger writes land (they are flushed before that commit).
			end := endOffset(t, brokers, "logs.analyzer-1")
			devstack.Eventually(t, 90*time.Second, func() bool {
				return committedOffset(t, brokers, "analyzer-1", "logs.analyzer-1") == end
			}, "the restarted analyzer did not consume its topic to the end (%d)", end)
			v := readVerdict(t, brokers, "analyzer-1")
			var st struct {
				Delivery            string `json:"delivery"`
				RedeliveriesSkipped int64  `json:"redeliveries_skipped"`
			}
			getJSON(t, a.URL()+"/stats", &st)
			t.Logf("%s: written %d (accepted %d), processed %d, lost %d, duplicates %d, re-deliveries skipped %d; lost e.g. %v, duplicated e.g. %v",
				mode, v.written, accepted.Load(), v.processedUnique, v.lost, v.duplicates, st.RedeliveriesSkipped, head(v.lostIDs), head(v.dupIDs))
			require.Equal(t, string(mode), st.Delivery)
			require.EqualValues(t, accepted.Load(), v.written, "every 202 is a record of logs.analyzer-1 (one analyzer)")
			switch mode {
			case ledger.AtMostOnce:
				require.Positive(t, v.lost, "at-most-once: what was committed and in flight at the kill is lost")
				require.Zero(t, v.duplicates, "at-most-once never processes twice")
			case ledger.AtLeastOnce:
				require.Zero(t, v.lost, "at-least-once loses nothing")
				require.Positive(t, v.duplicates, "at-least-once: what was processed after the last commit is processed again")
			case ledger.EffectivelyOnce:
				require.Zero(t, v.lost, "effectively-once loses nothing")
				require.Zero(t, v.duplicates, "effectively-once: the ledger read back skips what was processed")
				require.Positive(t, st.RedeliveriesSkipped, "re-delivered records were there to skip")
			}
		})
	}
}

func head(ids []string) []string {
	if len(ids) > 5 {
		return ids[:5]
	}
	return ids
}
