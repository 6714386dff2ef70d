package httpguard

import (
	"mime"
	"net/http"
	"slices"
	"strings"
)

// JSONOnly refuses with 415 a POST, PUT, PATCH or DELETE whose Content-Type
// is not application/json (parameters such as charset allowed) or one of
// also, with a body or without. Browsers send text/plain, forms and
// multipart cross-site without asking (no CORS preflight); every other type
// needs a preflight that neither service answers. A bodiless POST (drain,
// stop, reset) is refused too: without the rule, fetch(url, {method:
// "POST", mode: "no-cors"}) from any page could send it.
func JSONOnly(also ...string) func(http.Handler) http.Handler {
	accepted := append([]string{"application/json"}, also...)
	msg := "send Content-Type: " + strings.Join(accepted, " or ") + " (every POST, PUT, PATCH and DELETE, with a body or without, e.g. curl -H 'Content-Type: application/json')"
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !unsafe(r.Method) {
				next.ServeHTTP(w, r)
				return
			}
			ct := r.Header.Get("Content-Type")
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || !slices.Contains(accepted, mt) {
				got := "no Content-Type"
				if ct != "" {
					got = "Content-Type " + quote(ct)
				}
				refuse(w, http.StatusUnsupportedMediaType, r.Method+" "+r.URL.Path+" with "+got+" is refused: "+msg)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
