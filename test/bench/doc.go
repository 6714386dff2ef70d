// Package bench holds the distributor's end-to-end benchmark, run by
// `make bench` (build tag bench): saturation with wrk against the
// distributor and against a null handler, an open-model generator at fixed
// rates, peak RSS, and ingest-to-processed latency. See docs/BENCHMARKS.md.
package bench
