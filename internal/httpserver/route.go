package httpserver

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// NameSpansByRoute is chi middleware that names the request's server span
// after the matched route ("POST /api/faults/{id}/stop") once routing is
// done: otelhttp starts the span before chi knows the route. Use it inside
// the router, after the otelhttp middleware.
func NameSpansByRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			span := trace.SpanFromContext(r.Context())
			span.SetName(r.Method + " " + rc.RoutePattern())
			span.SetAttributes(attribute.String("http.route", rc.RoutePattern()))
		}
	})
}
