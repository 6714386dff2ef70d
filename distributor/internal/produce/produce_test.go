package produce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dsplab/dsplab/distributor/internal/config"
)

// These tests run against kfake, a real Kafka-protocol broker in process:
// the errors classified are the ones kafka-go really returns.

func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func kafkaConfig(brokers ...string) config.Kafka {
	k := config.Default().Kafka
	k.Brokers = brokers
	k.RequestTimeout = 3 * time.Second
	k.WriteTimeout = time.Second
	return k
}

type recorder struct {
	mu      sync.Mutex
	types   []string
	batches []int // records per produce call
}

func (r *recorder) KafkaBatch(_ string, records int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, records)
}

func (r *recorder) KafkaWrite(_ context.Context, _ time.Duration, errType string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.types = append(r.types, errType)
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.types...)
}

func setup(t *testing.T, c *kfake.Cluster, topics ...string) (*Producer, *recorder, config.Kafka) {
	t.Helper()
	cfg := kafkaConfig(c.ListenAddrs()...)
	if len(topics) > 0 {
		require.NoError(t, NewAdmin(cfg).EnsureTopics(t.Context(), topics, 1, 1))
	}
	rec := &recorder{}
	p := New(cfg, Options{Observer: rec})
	t.Cleanup(func() { p.Close() })
	return p, rec, cfg
}

func rec(topic string) Record { return Record{Topic: topic, Value: []byte(`{"packet_id":"1"}`)} }

// produceErrors makes the broker answer the next n produce requests with
// the Kafka error code.
func produceErrors(c *kfake.Cluster, code int16, n int) *atomic.Int32 {
	var served atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if served.Add(1) > int32(n) {
			c.DropControl()
			return nil, nil, false
		}
		c.KeepControl()
		r := req.(*kmsg.ProduceRequest)
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range r.Topics {
			t := kmsg.NewProduceResponseTopic()
			t.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				p := kmsg.NewProduceResponseTopicPartition()
				p.Partition, p.ErrorCode = rp.Partition, code
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil, true
	})
	return &served
}

func TestProduceWritesTheRecordWithTraceHeaders(t *testing.T) {
	c := newCluster(t)
	p, obs, cfg := setup(t, c, "logs.a")
	r := Record{Topic: "logs.a", Key: []byte("k"), Value: []byte("v"), Headers: []kafka.Header{{Key: "tenant", Value: []byte("t1")}}}
	require.NoError(t, p.Produce(t.Context(), r))
	require.Equal(t, []string{""}, obs.seen())

	conn, err := kafka.DialLeader(t.Context(), "tcp", cfg.Brokers[0], "logs.a", 0)
	require.NoError(t, err)
	defer conn.Close()
	m, err := conn.ReadMessage(1 << 20)
	require.NoError(t, err)
	require.Equal(t, "v", string(m.Value))
	keys := map[string]bool{}
	for _, h := range m.Headers {
		keys[h.Key] = true
	}
	require.True(t, keys["tenant"])
}

func TestClassifiesUnknownTopic(t *testing.T) {
	c := newCluster(t)
	p, _, _ := setup(t, c)
	err := p.Produce(t.Context(), rec("logs.missing"))
	var pe *Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, TypeUnknownTopic, pe.Type)
}

func TestClassifiesTooLargeAsTheClientsFault(t *testing.T) {
	c := newCluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "200"}))
	p, _, _ := setup(t, c, "logs.a")
	for i := 0; i < 10; i++ {
		err := p.Produce(t.Context(), Record{Topic: "logs.a", Value: make([]byte, 1000)})
		var pe *Error
		require.ErrorAs(t, err, &pe)
		require.Equal(t, TypeTooLarge, pe.Type)
	}
	require.Zero(t, p.ConsecutiveErrors(), "a too-large record says nothing about Kafka's health")
	require.NoError(t, p.Produce(t.Context(), rec("logs.a")), "breaker still closed")
}

func TestRetriesNotLeaderAndTimeoutWithinTheDeadline(t *testing.T) {
	for name, code := range map[string]int16{"not_leader": 6, "timeout": 7} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			p, obs, _ := setup(t, c, "logs.a")
			produceErrors(c, code, 2)
			require.NoError(t, p.Produce(t.Context(), rec("logs.a")))
			require.Equal(t, []string{name, name, ""}, obs.seen())
		})
	}
}

func TestDoesNotRetryOtherErrors(t *testing.T) {
	c := newCluster(t)
	p, obs, _ := setup(t, c, "logs.a")
	produceErrors(c, 87 /* INVALID_RECORD */, 1)
	var pe *Error
	require.ErrorAs(t, p.Produce(t.Context(), rec("logs.a")), &pe)
	require.Equal(t, TypeOther, pe.Type)
	require.Equal(t, []string{TypeOther}, obs.seen())
}

func TestClassifiesConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := New(kafkaConfig(addr), Options{})
	defer p.Close()
	var pe *Error
	require.ErrorAs(t, p.Produce(t.Context(), rec("logs.a")), &pe)
	require.Equal(t, TypeConnRefused, pe.Type)
}

func TestClassifiesConnectionReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4)
			c.Read(buf)                   // let the request arrive,
			c.(*net.TCPConn).SetLinger(0) // then close with a RST
			c.Close()
		}
	}()
	p := New(kafkaConfig(ln.Addr().String()), Options{})
	defer p.Close()
	var pe *Error
	require.ErrorAs(t, p.Produce(t.Context(), rec("logs.a")), &pe)
	require.Equal(t, TypeConnReset, pe.Type, pe.Err.Error())
}

func TestClassifiesAStalledBrokerAsTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // accept, never answer (a paused broker)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	cfg := kafkaConfig(ln.Addr().String())
	cfg.RequestTimeout = 1500 * time.Millisecond
	p := New(cfg, Options{})
	defer p.Close()
	var pe *Error
	require.ErrorAs(t, p.Produce(t.Context(), rec("logs.a")), &pe)
	require.Equal(t, TypeTimeout, pe.Type, pe.Err.Error())
}

func TestClassifiesAnUnresolvableBrokerAsNetwork(t *testing.T) {
	p := New(kafkaConfig("broker.invalid:9092"), Options{})
	defer p.Close()
	var pe *Error
	require.ErrorAs(t, p.Produce(t.Context(), rec("logs.a")), &pe)
	require.Equal(t, TypeNetwork, pe.Type, pe.Err.Error())
}

func TestKafkaBreakerOpensAfterConsecutiveFaultsAndAnswersFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	cfg := kafkaConfig(addr)
	cfg.Breaker = config.Breaker{Failures: 3, Backoff: config.Backoff{BaseBackoff: time.Minute, MaxBackoff: time.Minute, StableAfter: time.Minute}}
	p := New(cfg, Options{})
	defer p.Close()
	for i := 1; i <= 3; i++ {
		require.NotErrorIs(t, p.Produce(t.Context(), rec("logs.a")), ErrBreakerOpen)
		require.EqualValues(t, i, p.ConsecutiveErrors())
	}
	require.ErrorIs(t, p.Produce(t.Context(), rec("logs.a")), ErrBreakerOpen)
}

// A writer rebuild on reload fails no write in flight: writers keep using
// the old writer until they finish, and it is closed only then.
func TestReconfigureRebuildsTheWriterWithoutFailingInFlightWrites(t *testing.T) {
	c := newCluster(t)
	p, _, cfg := setup(t, c, "logs.a")
	const writers, each = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := p.Produce(context.Background(), rec("logs.a")); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		next := cfg
		next.Acks = []string{"all", "1"}[i%2]
		next.BatchSize = 100 + i
		p.Reconfigure(next)
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	end, err := NewAdmin(cfg).client.ListOffsets(t.Context(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{"logs.a": {kafka.LastOffsetOf(0)}}})
	require.NoError(t, err)
	require.EqualValues(t, writers*each, end.Topics["logs.a"][0].LastOffset, "every write landed")
}

func TestLagIsEndOffsetMinusCommitted(t *testing.T) {
	c := newCluster(t)
	p, _, cfg := setup(t, c, "logs.a")
	for i := 0; i < 10; i++ {
		require.NoError(t, p.Produce(t.Context(), rec("logs.a")))
	}
	a := NewAdmin(cfg)
	lag, err := a.Lag(t.Context(), "logs.a", "g")
	require.NoError(t, err)
	require.EqualValues(t, 10, lag, "nothing committed yet: everything is lag")

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, GroupID: "g", Topic: "logs.a", MaxWait: 50 * time.Millisecond})
	defer r.Close()
	for i := 0; i < 4; i++ {
		m, err := r.FetchMessage(t.Context())
		require.NoError(t, err)
		require.NoError(t, r.CommitMessages(t.Context(), m))
	}
	lag, err = a.Lag(t.Context(), "logs.a", "g")
	require.NoError(t, err)
	require.EqualValues(t, 6, lag)
}

func TestClassifyNil(t *testing.T) {
	require.Equal(t, "", Classify(nil))
	require.Equal(t, TypeOther, Classify(errors.New("x")))
	require.Equal(t, TypeNotLeader, Classify(fmt.Errorf("wrapped: %w", kafka.WriteErrors{nil, kafka.NotLeaderForPartition})))
}

// A client that hangs up does not cancel its write (it lands) and is not a
// Kafka fault: the breaker stays closed for everyone else.
func TestAClientHangingUpNeitherCancelsTheWriteNorCountsAsAFault(t *testing.T) {
	c := newCluster(t)
	p, _, cfg := setup(t, c, "logs.a")
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 10; i++ {
		require.NoError(t, p.Produce(gone, rec("logs.a")))
	}
	require.Zero(t, p.ConsecutiveErrors())
	end, err := NewAdmin(cfg).client.ListOffsets(t.Context(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{"logs.a": {kafka.LastOffsetOf(0)}}})
	require.NoError(t, err)
	require.EqualValues(t, 10, end.Topics["logs.a"][0].LastOffset)
}

// establishedTo counts this network namespace's client sockets connected
// to port (in /proc/net/tcp and tcp6, state 01: ESTABLISHED).
func establishedTo(t *testing.T, port int) int {
	t.Helper()
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(t, err)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "01" {
				continue
			}
			if i := strings.LastIndexByte(fields[2], ':'); i >= 0 && fields[2][i+1:] == fmt.Sprintf("%04X", port) {
				n++
			}
		}
	}
	return n
}

// A reconfigured writer's connections are closed once its in-flight
// writes are done: the old transport's idle connections do not stay open
// (the Writer, given a transport, left them open until the broker or the
// idle timeout closed them).
func TestReconfigureClosesTheOldConnections(t *testing.T) {
	c := newCluster(t)
	p, _, cfg := setup(t, c, "logs.a")
	_, portText, err := net.SplitHostPort(cfg.Brokers[0])
	require.NoError(t, err)
	port, err := strconv.Atoi(portText)
	require.NoError(t, err)
	base := establishedTo(t, port) // the admin client's

	require.NoError(t, p.Produce(t.Context(), rec("logs.a")))
	mine := establishedTo(t, port) - base
	require.Positive(t, mine, "the writer's connections")

	next := cfg
	next.Acks = "all"
	p.Reconfigure(next)
	require.NoError(t, p.Produce(t.Context(), rec("logs.a")))
	require.Eventually(t, func() bool { return establishedTo(t, port)-base == mine }, 5*time.Second, 20*time.Millisecond,
		"only the new writer's %d connections are open", mine)
}
