package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/internal/devstack"
)

// Garbage produced straight into an analyzer's topic (issue 13 saw it with
// kcat; here kafka-go against devkafka) is skipped by the real analyzer,
// which moves on to the next packet, and counted in its /stats and
// analyzer_unreadable_records_total.
func TestGarbageInAnAnalyzersTopicIsSkippedAndCounted(t *testing.T) {
	s := devstack.Start(t, bins, devstack.Options{})
	w := &kafka.Writer{Addr: kafka.TCP(s.KafkaAddr), Topic: "logs.analyzer-1", BatchTimeout: time.Millisecond}
	defer w.Close()
	garbage := []kafka.Message{{Value: []byte("hello kcat")}, {Value: []byte(`{"tenant":"t1"}`)}, {Value: []byte{0xff, 0x00}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx, garbage...))

	l := send(t, s.Distributor.URL(), 30, 2, 5, "") // real packets after the garbage
	require.Equal(t, map[int]int{http.StatusAccepted: 30}, l.statuses)
	waitProcessed(t, s, 30*time.Second)
	var st struct {
		Unreadable int64 `json:"unreadable_records"`
	}
	getJSON(t, s.Analyzers[0].URL()+"/stats", &st)
	require.EqualValues(t, len(garbage), st.Unreadable)
	getJSON(t, s.Analyzers[1].URL()+"/stats", &st)
	require.Zero(t, st.Unreadable, "analyzer-2's topic had no garbage")

	var got float64
	for series, v := range scrape(t, s.Analyzers[0].URL()) {
		if strings.HasPrefix(series, "analyzer_unreadable_records_total{") && strings.Contains(series, `analyzer="analyzer-1"`) {
			got = v
		}
	}
	require.EqualValues(t, len(garbage), got)
}
