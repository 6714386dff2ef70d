package api

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/dsplab/dsplab/distributor/internal/budget"
	"github.com/dsplab/dsplab/distributor/internal/ingest"
	"github.com/dsplab/dsplab/distributor/internal/pipeline"
	"github.com/dsplab/dsplab/distributor/internal/produce"
)

// Results, the values of distributor_requests_total{result}.
const (
	resultAccepted    = "accepted"
	resultBadRequest  = "bad_request"
	resultTooLarge    = "too_large"
	resultRateLimited = "rate_limited"
	resultUnavailable = "unavailable"
	resultError       = "error"
)

// errorBody is the one JSON error shape of the distributor.
type errorBody struct {
	Error      string           `json:"error"`
	Problems   []ingest.Problem `json:"problems,omitempty"`
	Scope      string           `json:"scope,omitempty"`
	ErrorType  string           `json:"error_type,omitempty"`
	RetryAfter int              `json:"retry_after_seconds,omitempty"`
}

// httpError is an error with its answer.
type httpError struct {
	status int
	result string
	body   errorBody
}

func (e *httpError) Error() string { return e.body.Error }

func badRequest(msg string, problems ...ingest.Problem) *httpError {
	return &httpError{status: http.StatusBadRequest, result: resultBadRequest, body: errorBody{Error: msg, Problems: problems}}
}

func unavailable(msg, errType string, retry time.Duration) *httpError {
	return &httpError{status: http.StatusServiceUnavailable, result: resultUnavailable,
		body: errorBody{Error: msg, ErrorType: errType, RetryAfter: retrySeconds(retry)}}
}

// retrySeconds rounds up to whole seconds, at least 1, as Retry-After wants.
func retrySeconds(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }

// classify maps any error of the ingest path to its answer.
func classify(err error, kafkaRetry time.Duration) *httpError {
	var he *httpError
	var ve *ingest.ValidationError
	var mbe *http.MaxBytesError
	var pe *produce.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &ve):
		return badRequest(ve.Error(), ve.Problems...)
	case errors.Is(err, ingest.ErrMalformed):
		return badRequest(err.Error())
	case errors.As(err, &mbe):
		return &httpError{status: http.StatusRequestEntityTooLarge, result: resultTooLarge,
			body: errorBody{Error: "body larger than the limit of " + strconv.FormatInt(mbe.Limit, 10) + " bytes"}}
	case errors.Is(err, ingest.ErrTooLarge):
		return &httpError{status: http.StatusRequestEntityTooLarge, result: resultTooLarge, body: errorBody{Error: err.Error()}}
	case errors.Is(err, budget.ErrExhausted):
		// Load shedding, like the in-flight bound: a server-side refusal,
		// counted against the SLA.
		return unavailable("overloaded: "+err.Error()+" (limits.max_bytes_in_flight)", "", time.Second)
	case errors.Is(err, budget.ErrTooLarge):
		return &httpError{status: http.StatusRequestEntityTooLarge, result: resultTooLarge, body: errorBody{Error: err.Error()}}
	case errors.Is(err, pipeline.ErrNoAnalyzer):
		return unavailable("no healthy analyzer", "", time.Second)
	case errors.Is(err, produce.ErrBreakerOpen):
		return unavailable("kafka unavailable: circuit breaker open", "breaker_open", kafkaRetry)
	case errors.As(err, &pe) && pe.Type == produce.TypeTooLarge:
		return &httpError{status: http.StatusRequestEntityTooLarge, result: resultTooLarge,
			body: errorBody{Error: "packet too large for Kafka", ErrorType: pe.Type}}
	case errors.As(err, &pe):
		return unavailable("kafka unavailable", pe.Type, time.Second)
	}
	return &httpError{status: http.StatusInternalServerError, result: resultError, body: errorBody{Error: err.Error()}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *httpError) {
	if e.body.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.body.RetryAfter))
	}
	writeJSON(w, e.status, e.body)
}
