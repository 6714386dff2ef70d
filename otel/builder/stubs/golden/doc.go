// Package golden is an empty stand-in: the contrib module of this name is
// imported only by contrib's own tests, and the Go module proxy here
// answers 403 for its v0.155.0, which stops the builder's go mod tidy.
// Nothing of it is compiled into the collector.
package golden
