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

// Error types, the values of distributor_kafka_write_errors_total{error_type}
// and of Error.Type. They are names, not errors: this package's Err* names
// are error values (ErrBreakerOpen), as in the rest of the module.
const (
	TypeTimeout      = "timeout"
	TypeNotLeader    = "not_leader"
	TypeUnknownTopic = "unknown_topic"
	TypeTooLarge     = "too_large"
	TypeConnRefused  = "conn_refused"
	TypeConnReset    = "conn_reset"
	TypeNetwork      = "network"
	TypeOther        = "other"
)

// ErrorTypes lists every error type Classify returns.
var ErrorTypes = []string{TypeTimeout, TypeNotLeader, TypeUnknownTopic, TypeTooLarge, TypeConnRefused, TypeConnReset, TypeNetwork, TypeOther}

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
			return TypeTimeout
		case kafka.NotLeaderForPartition, kafka.LeaderNotAvailable, kafka.NotEnoughReplicas,
			kafka.NotEnoughReplicasAfterAppend, kafka.FencedLeaderEpoch, kafka.UnknownLeaderEpoch:
			return TypeNotLeader
		case kafka.UnknownTopicOrPartition:
			return TypeUnknownTopic
		case kafka.MessageSizeTooLarge, kafka.RecordListTooLarge:
			return TypeTooLarge
		}
		return TypeOther
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return TypeConnRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return TypeConnReset
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return TypeTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return TypeTimeout
	}
	var oe *net.OpError
	var de *net.DNSError
	if errors.As(err, &oe) || errors.As(err, &de) || errors.Is(err, net.ErrClosed) {
		return TypeNetwork
	}
	return TypeOther
}

// retryable says whether a write may be retried within the request
// deadline: a timeout or a leadership change is often over in a moment;
// anything else is returned at once.
func retryable(errType string) bool { return errType == TypeTimeout || errType == TypeNotLeader }

// kafkaFault says whether an error type counts against the Kafka breaker
// and the consecutive-error gauge. A record that is too large is the
// client's fault, not Kafka's.
func kafkaFault(errType string) bool { return errType != "" && errType != TypeTooLarge }
