// Command devkafka is an embedded Kafka-protocol broker for development and
// tests, built on franz-go's kfake. It keeps everything in memory: a
// restart loses every topic and record.
//
//	devkafka -addr 127.0.0.1:9092                 # the dev stack
//	devkafka -addr 0.0.0.0:9092 -advertise kafka:9092   # in a container
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dsplab/dsplab/internal/logging"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9092", "listen address")
	advertise := flag.String("advertise", "", "host:port announced to clients in metadata (default: the listen address)")
	partitions := flag.Int("partitions", 1, "partitions of auto-created topics")
	segment := flag.Int64("segment-bytes", 8<<20, "log.segment.bytes: the size at which a partition's log rolls to a new segment (kfake's default is 100 MiB)")
	flag.Parse()
	if err := run(*addr, *advertise, *partitions, *segment); err != nil {
		fmt.Fprintln(os.Stderr, "devkafka:", err)
		os.Exit(1)
	}
}

func run(addr, advertise string, partitions int, segmentBytes int64) error {
	log := logging.FromEnv("devkafka")
	c, err := newCluster(addr, advertise, partitions, segmentBytes)
	if err != nil {
		return err
	}
	defer c.Close()
	if advertise == "" {
		advertise = addr
	}
	log.Info("kafka-protocol broker (kfake) listening", "addr", addr, "advertised", advertise)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	slog.Info("stopping")
	return nil
}

// newCluster starts the broker on addr (the flags' meanings).
func newCluster(addr, advertise string, partitions int, segmentBytes int64) (*kfake.Cluster, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-addr: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("-addr port: %w", err)
	}
	if advertise == "" {
		advertise = addr
	}
	if segmentBytes < 1<<20 {
		return nil, fmt.Errorf("-segment-bytes %d: must be at least 1 MiB", segmentBytes)
	}
	return kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(partitions),
		// kfake keeps the active segment in one slice that doubles as it
		// grows, in the goroutine that serves every request: its default
		// 100 MiB segments meant copies of 64 MB that held up every
		// produce and fetch (issue 18, docs/BENCHMARKS.md).
		kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.FormatInt(segmentBytes, 10)}),
		// kfake always asks for 127.0.0.1:<port>; listen where -addr says and
		// announce -advertise, so that containers can reach it by name.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			if err != nil {
				return nil, err
			}
			return advertised{ln, advertise}, nil
		}),
	)
}

// advertised is a listener whose Addr is the address announced to clients.
type advertised struct {
	net.Listener
	addr string
}

func (a advertised) Addr() net.Addr { return hostPort(a.addr) }

type hostPort string

func (h hostPort) Network() string { return "tcp" }
func (h hostPort) String() string  { return string(h) }
