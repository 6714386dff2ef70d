package httpguard

import (
	"net/http"
	"net/url"
	"strings"
)

// SameOrigin refuses with 403 a POST, PUT, PATCH or DELETE that a browser
// sent on behalf of another site or origin:
//
//   - Sec-Fetch-Site present and not same-origin or none (cross-site, or
//     same-site: a page on another port of localhost, such as Grafana's, is
//     same-site but another origin);
//   - Origin present and not this service's own, that is not
//     http(s)://<the request's Host> ("null" included).
//
// Requests with neither header are not from a browser's page (curl, Go
// clients, Alertmanager) and pass. Swagger UI served by the service itself
// sends Sec-Fetch-Site: same-origin and its own Origin, and passes.
func SameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !unsafe(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		switch site := r.Header.Get("Sec-Fetch-Site"); site {
		case "", "same-origin", "none":
		default:
			refuse(w, http.StatusForbidden, r.Method+" from a page of another site (Sec-Fetch-Site: "+quote(site)+") is refused: "+
				"use this service's own Swagger UI, curl or another non-browser client")
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !ownOrigin(o, r.Host) {
			refuse(w, http.StatusForbidden, r.Method+" from the page of origin "+quote(o)+" is refused: only this service's own origin (http://"+
				r.Host+") may change it; use its Swagger UI, curl or another non-browser client")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ownOrigin reports whether an Origin header names the origin the request
// was sent to. The scheme is not compared with the connection's: behind a
// TLS proxy the service sees http while the page is https.
func ownOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.User != nil {
		return false
	}
	return strings.EqualFold(u.Host, host)
}
