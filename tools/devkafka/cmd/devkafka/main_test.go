package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

// The segment size reaches kfake as the broker's log.segment.bytes, which
// is what kfake's roll decision reads for a topic created without its own
// segment.bytes (kfake's data.go, segmentBytes; the distributor and the
// analyzers create theirs without). kfake's DescribeConfigs of such a topic
// still shows its static 100 MiB default for segment.bytes, so the test
// asks for the broker's config, with a real client.
func TestSegmentBytesIsTheBrokersLogSegmentBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port: the broker announces the address it is given
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	c, err := newCluster(addr, "", 1, 8<<20)
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 5 * time.Second}
	resp, err := cl.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeBroker, ResourceName: "0", ConfigNames: []string{"log.segment.bytes"}}}})
	require.NoError(t, err)
	require.Len(t, resp.Resources, 1)
	require.NoError(t, resp.Resources[0].Error)
	require.Len(t, resp.Resources[0].ConfigEntries, 1)
	require.Equal(t, "8388608", resp.Resources[0].ConfigEntries[0].ConfigValue)

	_, err = newCluster("127.0.0.1:0", "", 1, 1000)
	require.ErrorContains(t, err, "-segment-bytes 1000: must be at least 1 MiB")
}
