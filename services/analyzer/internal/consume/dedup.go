package consume

// Dedup remembers the last N packet keys (FIFO eviction). It is not safe
// for concurrent use; the consumer loop owns it.
type Dedup struct {
	seen map[string]struct{}
	ring []string
	next int
}

// NewDedup returns a window of n keys (n >= 1).
func NewDedup(n int) *Dedup {
	n = max(n, 1)
	return &Dedup{seen: make(map[string]struct{}, n), ring: make([]string, n)}
}

// Seen records key and reports whether it was already in the window.
func (d *Dedup) Seen(key string) bool {
	if _, ok := d.seen[key]; ok {
		return true
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.seen, old)
	}
	d.ring[d.next] = key
	d.seen[key] = struct{}{}
	d.next = (d.next + 1) % len(d.ring)
	return false
}

// Len is the number of keys remembered.
func (d *Dedup) Len() int { return len(d.seen) }
