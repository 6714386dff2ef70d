package httpguard

import (
	"encoding/json"
	"net/http"
)

// refuse answers status with the one JSON error shape of both services.
func refuse(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// unsafe reports whether the method may change state: everything but GET,
// HEAD and OPTIONS (http.CrossOriginProtection's safe methods).
func unsafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}
