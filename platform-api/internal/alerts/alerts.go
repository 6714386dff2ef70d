// Package alerts receives Alertmanager's webhook notifications and keeps
// the most recent alerts, for the API and for experiment reports (time to
// detect is the first alert after a fault starts).
//
// Whoever reaches the webhook chooses what is stored, so the store is
// bounded three ways: each alert is trimmed to Limits.MaxAlertBytes (long
// values cut, then the largest annotations and labels dropped, marked
// Truncated), and the oldest alerts go when the store passes MaxAlerts or
// MaxBytes. Listing is paged (Page), so no answer grows with the store.
package alerts

import (
	"cmp"
	"maps"
	"slices"
	"strings"
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
	// Seq numbers the alerts received, from 1: the paging cursor.
	Seq int64 `json:"seq"`
	// Truncated says that values were cut or labels and annotations
	// dropped to keep the alert within the store's per-alert size.
	Truncated bool `json:"truncated,omitempty"`
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

// Limits bound the store.
type Limits struct {
	MaxAlerts     int // alerts kept, the newest
	MaxBytes      int // estimated bytes of all alerts kept
	MaxAlertBytes int // estimated bytes of one alert, after trimming
	MaxValueBytes int // one label or annotation value, or the generator URL
}

// DefaultLimits: a thousand alerts, at most 16 MiB, 64 KiB each, values
// of 4 KiB. Alertmanager's own alerts are a few hundred bytes.
var DefaultLimits = Limits{MaxAlerts: 1000, MaxBytes: 16 << 20, MaxAlertBytes: 64 << 10, MaxValueBytes: 4 << 10}

// Store keeps the newest alerts within its limits. It is safe for
// concurrent use.
type Store struct {
	mu     sync.Mutex
	lim    Limits
	alerts []Alert // oldest first, Seq increasing
	sizes  []int   // size of alerts[i]
	bytes  int
	total  int
}

// New returns a store of at most max alerts, with the default byte limits.
func New(max int) *Store {
	l := DefaultLimits
	l.MaxAlerts = max
	return NewWithLimits(l)
}

// NewWithLimits returns a store bounded by l (zero fields: the default).
func NewWithLimits(l Limits) *Store {
	d := DefaultLimits
	for _, f := range []struct{ dst, src *int }{{&d.MaxAlerts, &l.MaxAlerts}, {&d.MaxBytes, &l.MaxBytes}, {&d.MaxAlertBytes, &l.MaxAlertBytes}, {&d.MaxValueBytes, &l.MaxValueBytes}} {
		if *f.src > 0 {
			*f.dst = *f.src
		}
	}
	return &Store{lim: d}
}

// Add records a notification's alerts, stamped with now, and returns how
// many it held.
func (s *Store) Add(n Notification, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range n.Alerts {
		s.total++
		a.ReceivedAt, a.Receiver, a.Seq = now, n.Receiver, int64(s.total)
		a.Receiver = cut(a.Receiver, s.lim.MaxValueBytes, &a.Truncated)
		size := trim(&a, s.lim)
		s.alerts = append(s.alerts, a)
		s.sizes = append(s.sizes, size)
		s.bytes += size
	}
	drop := 0
	for len(s.alerts)-drop > s.lim.MaxAlerts || (s.bytes > s.lim.MaxBytes && drop < len(s.alerts)) {
		s.bytes -= s.sizes[drop]
		drop++
	}
	if drop > 0 {
		// Copied, so that the dropped alerts' memory is freed now.
		s.alerts = slices.Clone(s.alerts[drop:])
		s.sizes = slices.Clone(s.sizes[drop:])
	}
	return len(n.Alerts)
}

// Since returns the alerts received at or after t, oldest first.
func (s *Store) Since(t time.Time) []Alert {
	out, _ := s.Page(t, 0, 0)
	return out
}

// Page returns, oldest first, at most limit (0: all) alerts received at or
// after since whose Seq is above after, and the cursor of the next page
// (the last Seq returned; 0 when nothing follows).
func (s *Store) Page(since time.Time, after int64, limit int) ([]Alert, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.alerts, after+1, func(a Alert, seq int64) int { return cmp.Compare(a.Seq, seq) })
	var out []Alert
	for ; i < len(s.alerts); i++ {
		a := s.alerts[i]
		if a.ReceivedAt.Before(since) {
			continue
		}
		if limit > 0 && len(out) == limit {
			return out, out[len(out)-1].Seq
		}
		out = append(out, a)
	}
	return out, 0
}

// Total is how many alerts were ever received.
func (s *Store) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Bytes is the estimated size of the alerts kept.
func (s *Store) Bytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// alertOverhead is the estimated size of an alert's fixed fields.
const alertOverhead = 256

// size estimates the bytes an alert holds.
func size(a *Alert) int {
	n := alertOverhead + len(a.Status) + len(a.GeneratorURL) + len(a.Fingerprint) + len(a.Receiver)
	for _, m := range []map[string]string{a.Labels, a.Annotations} {
		for k, v := range m {
			n += len(k) + len(v) + 32
		}
	}
	return n
}

// trim cuts a's long values, then drops its largest annotations, then its
// largest labels (never alertname) until it fits lim.MaxAlertBytes, and
// returns its size.
func trim(a *Alert, lim Limits) int {
	a.Status = cut(a.Status, 64, &a.Truncated)
	a.Fingerprint = cut(a.Fingerprint, 64, &a.Truncated)
	a.GeneratorURL = cut(a.GeneratorURL, lim.MaxValueBytes, &a.Truncated)
	for _, m := range []*map[string]string{&a.Labels, &a.Annotations} {
		if *m == nil {
			continue
		}
		c := make(map[string]string, len(*m)) // the decoded maps may be shared; never edit them
		for k, v := range *m {
			c[cut(k, 256, &a.Truncated)] = cut(v, lim.MaxValueBytes, &a.Truncated)
		}
		*m = c
	}
	for _, m := range []map[string]string{a.Annotations, a.Labels} {
		keys := slices.SortedFunc(maps.Keys(m), func(x, y string) int { return len(m[y]) + len(y) - len(m[x]) - len(x) })
		for _, k := range keys {
			if size(a) <= lim.MaxAlertBytes {
				break
			}
			if k != "alertname" {
				delete(m, k)
				a.Truncated = true
			}
		}
	}
	return size(a)
}

// cut shortens s to at most n bytes (on a UTF-8 boundary), noting it.
func cut(s string, n int, truncated *bool) string {
	if len(s) <= n {
		return s
	}
	*truncated = true
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return strings.Clone(s[:n]) // a copy: the cut-off rest is freed
}
