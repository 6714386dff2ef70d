package httpguard

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Bearer requires Authorization: Bearer <token> when token is not empty
// (an empty token lets every request through). A missing or wrong token
// gets 401 with WWW-Authenticate and a message naming env, the variable
// that holds the token. Both sides are hashed before the constant-time
// comparison, so neither the token's content nor its length leaks through
// the answer's timing.
func Bearer(token, realm, env string) func(http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		if token == "" {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, ok := bearerToken(r.Header.Get("Authorization"))
			sum := sha256.Sum256([]byte(got))
			if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
				msg := "this route needs Authorization: Bearer <" + env + ">"
				if ok {
					msg = "wrong bearer token: " + msg
				}
				refuse(w, http.StatusUnauthorized, msg)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// bearerToken takes the token out of an Authorization value; the scheme is
// case-insensitive (RFC 9110 §11.1).
func bearerToken(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}
