// Command grafana-standin stands in for Grafana in the e2e stack, where the
// grafana/grafana image cannot be pulled and Grafana cannot be built from
// the Go module proxy. It serves the part of Grafana's HTTP API the
// platform calls — creating a region annotation (POST /api/annotations) and
// closing it (PATCH /api/annotations/{id}) — keeps the annotations in
// memory, and lists them (GET /api/annotations), so the e2e suite can check
// that every fault and traffic job was marked on the dashboards' time axis.
// /api/health answers as Grafana's does. Dashboards and provisioning are
// not served: they are checked statically (test/integration/dashboards_test.go).
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strconv"
	"sync"
)

type annotation struct {
	ID      int64    `json:"id"`
	Time    int64    `json:"time"`
	TimeEnd int64    `json:"timeEnd,omitempty"`
	Tags    []string `json:"tags"`
	Text    string   `json:"text"`
}

type store struct {
	mu   sync.Mutex
	list []*annotation
}

func main() {
	addr := flag.String("addr", ":3000", "listen address")
	flag.Parse()
	s := &store{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, map[string]string{"database": "ok", "version": "stand-in"})
	})
	mux.HandleFunc("POST /api/annotations", s.create)
	mux.HandleFunc("PATCH /api/annotations/{id}", s.patch)
	mux.HandleFunc("GET /api/annotations", s.all)
	log.Printf("grafana stand-in listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, mux))
}

func (s *store) create(w http.ResponseWriter, r *http.Request) {
	var a annotation
	if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"message": "bad annotation: " + err.Error()})
		return
	}
	if a.Time == 0 {
		reply(w, http.StatusBadRequest, map[string]string{"message": "time is required"})
		return
	}
	s.mu.Lock()
	a.ID = int64(len(s.list) + 1)
	s.list = append(s.list, &a)
	s.mu.Unlock()
	reply(w, http.StatusOK, map[string]any{"id": a.ID, "message": "Annotation added"})
}

func (s *store) patch(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	var p struct {
		TimeEnd int64   `json:"timeEnd"`
		Text    *string `json:"text"`
	}
	if err == nil {
		err = json.NewDecoder(r.Body).Decode(&p)
	}
	if err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"message": "bad patch: " + err.Error()})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 1 || id > int64(len(s.list)) {
		reply(w, http.StatusNotFound, map[string]string{"message": "Annotation not found"})
		return
	}
	a := s.list[id-1]
	if p.TimeEnd != 0 {
		a.TimeEnd = p.TimeEnd
	}
	if p.Text != nil {
		a.Text = *p.Text
	}
	reply(w, http.StatusOK, map[string]string{"message": "Annotation patched"})
}

func (s *store) all(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	reply(w, http.StatusOK, s.list)
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
