package produce

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/segmentio/kafka-go"
)

// Error types, the values of distributor_kafka_write_errors_total{error_type}.
const (
	ErrTimeout      = "timeout"
	ErrNotLeader    = "not_leader"
	ErrUnknownTopic = "unknown_topic"
	ErrTooLarge     = "too_large"
	ErrConnRefused  = "conn_refused"
	ErrConnReset    = "conn_reset"
	ErrNetwork      = "network"
	ErrOther        = "other"
)

// ErrorTypes lists every error type Classify returns.
var ErrorTypes = []string{ErrTimeout, ErrNotLeader, ErrUnknownTopic, ErrTooLarge, ErrConnRefused, ErrConnReset, ErrNetwork, ErrOther}

// Classify names the kind of a Kafka write error ("" for nil).
func Classify(err error) string {
	if err == nil {
		return ""
	}
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				return Classify(e)
			}
		}
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		switch ke {
		case kafka.RequestTimedOut:
			return ErrTimeout
		case kafka.NotLeaderForPartition, kafka.LeaderNotAvailable, kafka.NotEnoughReplicas,
			kafka.NotEnoughReplicasAfterAppend, kafka.FencedLeaderEpoch, kafka.UnknownLeaderEpoch:
			return ErrNotLeader
		case kafka.UnknownTopicOrPartition:
			return ErrUnknownTopic
		case kafka.MessageSizeTooLarge, kafka.RecordListTooLarge:
			return ErrTooLarge
		}
		return ErrOther
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ErrConnRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ErrConnReset
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ErrTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	var oe *net.OpError
	var de *net.DNSError
	if errors.As(err, &oe) || errors.As(err, &de) || errors.Is(err, net.ErrClosed) {
		return ErrNetwork
	}
	return ErrOther
}

// retryable says whether a write may be retried within the request
// deadline: a timeout or a leadership change is often over in a moment;
// anything else is returned at once.
func retryable(errType string) bool { return errType == ErrTimeout || errType == ErrNotLeader }

// kafkaFault says whether an error type counts against the Kafka breaker
// and the consecutive-error gauge. A record that is too large is the
// client's fault, not Kafka's.
func kafkaFault(errType string) bool { return errType != "" && errType != ErrTooLarge }
