package alerts

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

var fourMiB = strings.Repeat("x", 4<<20)

func huge(i int) Alert {
	return Alert{Status: "firing", Fingerprint: fmt.Sprint(i), Labels: map[string]string{"alertname": "Big", "n": fmt.Sprint(i)},
		Annotations: map[string]string{"description": fourMiB, "summary": "short"}}
}

// 300 alerts of 4 MiB each held 1.2 GB (and 7.3 GB at the peak): each is
// now cut to the per-alert size, and the store to its byte limit, oldest
// out first.
func TestTheStoreIsBoundedByBytesPerAlertAndInAll(t *testing.T) {
	s := NewWithLimits(Limits{MaxAlerts: 1000, MaxBytes: 1 << 20, MaxAlertBytes: 16 << 10, MaxValueBytes: 8 << 10})
	for i := range 300 {
		s.Add(Notification{Receiver: "platform", Alerts: []Alert{huge(i)}}, t0)
	}
	require.Equal(t, 300, s.Total())
	require.LessOrEqual(t, s.Bytes(), 1<<20)
	kept := s.Since(time.Time{})
	require.NotEmpty(t, kept)
	require.Less(t, len(kept), 300, "old alerts were trimmed to stay within MaxBytes")
	require.Equal(t, int64(300), kept[len(kept)-1].Seq, "the newest are kept")
	for _, a := range kept {
		require.True(t, a.Truncated)
		require.Len(t, a.Annotations["description"], 8<<10, "a long value is cut")
		require.Equal(t, "short", a.Annotations["summary"])
		require.Equal(t, "Big", a.Labels["alertname"])
	}
}

func TestAnAlertOverItsSizeLosesItsLargestAnnotationsThenLabelsButNotItsName(t *testing.T) {
	s := NewWithLimits(Limits{MaxAlertBytes: 2 << 10, MaxValueBytes: 1 << 10})
	a := Alert{Labels: map[string]string{"alertname": "X", "big": strings.Repeat("l", 1000)}, Annotations: map[string]string{}}
	for i := range 10 {
		a.Annotations[fmt.Sprintf("a%d", i)] = strings.Repeat("y", 100*(i+1))
	}
	s.Add(Notification{Alerts: []Alert{a}}, t0)
	got := s.Since(time.Time{})[0]
	require.True(t, got.Truncated)
	require.LessOrEqual(t, size(&got), 2<<10)
	require.NotContains(t, got.Annotations, "a9", "the largest goes first")
	require.Contains(t, got.Annotations, "a0")
	require.Equal(t, "X", got.Labels["alertname"])
	require.Len(t, a.Annotations, 10, "the caller's maps are not edited")
	small := Alert{Labels: map[string]string{"alertname": "Y"}}
	s.Add(Notification{Alerts: []Alert{small}}, t0)
	require.False(t, s.Since(time.Time{})[1].Truncated)
}

func TestPagesFollowTheCursorEvenWhileOldAlertsAreTrimmed(t *testing.T) {
	s := New(50)
	add := func(n int, at time.Time) {
		for range n {
			s.Add(Notification{Alerts: []Alert{{Labels: map[string]string{"alertname": "A"}}}}, at)
		}
	}
	add(30, t0)
	page, next := s.Page(time.Time{}, 0, 20)
	require.Len(t, page, 20)
	require.Equal(t, int64(1), page[0].Seq)
	require.Equal(t, int64(20), next)
	add(40, t0.Add(time.Minute)) // 70 received, the oldest 20 trimmed
	page, next = s.Page(time.Time{}, next, 20)
	require.Equal(t, int64(21), page[0].Seq, "the cursor goes on where it was, not shifted by the trim")
	require.Equal(t, int64(40), next)
	page, next = s.Page(t0.Add(time.Minute), 0, 100)
	require.Len(t, page, 40, "since filters")
	require.Zero(t, next, "no next on the last page")
	page, next = s.Page(time.Time{}, 69, 1)
	require.Equal(t, int64(70), page[0].Seq)
	require.Zero(t, next)
}
