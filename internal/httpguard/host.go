package httpguard

import (
	"net"
	"net/http"
	"strings"
)

// Hosts is the set of names a request's Host header may carry. A
// DNS-rebinding page talks to the service under a name its author
// controls; every request it sends carries that name, so refusing names
// the service is not known by refuses the page.
//
// Always allowed: localhost and its subdomains (browsers resolve them to
// loopback themselves, RFC 6761), IP literals (127.0.0.1, [::1], a
// container's address: rebinding needs a name, and a page served from an
// IP is only same-origin with that IP), and the empty Host of an HTTP/1.0
// client (no browser sends one). The port is ignored.
type Hosts struct {
	names map[string]bool
	any   bool
	env   string
}

// NewHosts allows names (the compose service names the service is reached
// by) plus the comma-separated list extra (the env variable env, named in
// refusals). An entry "*" in extra allows every host and so switches the
// check off; entries may carry a port, which is ignored.
func NewHosts(env, extra string, names ...string) Hosts {
	h := Hosts{names: map[string]bool{}, env: env}
	for _, n := range names {
		h.names[hostname(n)] = true
	}
	for _, n := range strings.Split(extra, ",") {
		switch n = strings.TrimSpace(n); n {
		case "":
		case "*":
			h.any = true
		default:
			h.names[hostname(n)] = true
		}
	}
	return h
}

// Allowed reports whether a Host header value (host or host:port) names
// this service.
func (h Hosts) Allowed(hostport string) bool {
	name := hostname(hostport)
	switch {
	case h.any, name == "", h.names[name]:
		return true
	case name == "localhost", strings.HasSuffix(name, ".localhost"):
		return true
	}
	return net.ParseIP(name) != nil
}

// Check refuses with 421 Misdirected Request every request whose Host is
// not allowed, naming the host and the env variable that would allow it.
func (h Hosts) Check(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.Allowed(r.Host) {
			refuse(w, http.StatusMisdirectedRequest, "Host "+quote(r.Host)+" is not a name of this service "+
				"(a DNS-rebinding page would send its own): use localhost or 127.0.0.1, or add the name to "+h.env+" (comma separated)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostname is the lower-case host of a Host value, without port, IPv6
// brackets or a trailing dot.
func hostname(hostport string) string {
	h := strings.TrimSpace(hostport)
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimPrefix(strings.TrimSuffix(h, "]"), "[")
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// quote shows a client-supplied value in a message, bounded and with
// control characters escaped.
func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			b.WriteString(`\x`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&0xf])
			continue
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}
