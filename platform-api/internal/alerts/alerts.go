// Package alerts receives Alertmanager's webhook notifications and keeps
// the most recent alerts, for the API and for experiment reports (time to
// detect is the first alert after a fault starts).
package alerts

import (
	"sync"
	"time"
)

// Alert is one alert of a notification, as Alertmanager sends it.
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
	// ReceivedAt is when the platform got the notification.
	ReceivedAt time.Time `json:"receivedAt"`
	Receiver   string    `json:"receiver"`
}

// Notification is Alertmanager's webhook body (version 4).
type Notification struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []Alert           `json:"alerts"`
}

// Store keeps the last Max alerts. It is safe for concurrent use.
type Store struct {
	mu     sync.Mutex
	max    int
	alerts []Alert
	total  int
}

// New returns a store of at most max alerts.
func New(max int) *Store { return &Store{max: max} }

// Add records a notification's alerts, stamped with now.
func (s *Store) Add(n Notification, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range n.Alerts {
		a.ReceivedAt, a.Receiver = now, n.Receiver
		s.alerts = append(s.alerts, a)
		s.total++
	}
	if over := len(s.alerts) - s.max; over > 0 {
		s.alerts = append([]Alert(nil), s.alerts[over:]...)
	}
	return len(n.Alerts)
}

// Since returns the alerts received at or after t, oldest first.
func (s *Store) Since(t time.Time) []Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Alert
	for _, a := range s.alerts {
		if !a.ReceivedAt.Before(t) {
			out = append(out, a)
		}
	}
	return out
}

// Total is how many alerts were ever received.
func (s *Store) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}
