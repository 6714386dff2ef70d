package faults

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Run with -race: a fault is built completely (marker, command, what to
// restore) before List or Get can copy it, so readers never see one half
// made. Before, apply wrote the marker id, the command and the saved
// limits after the fault had been published.
func TestReadersNeverSeeAFaultBeingBuilt(t *testing.T) {
	const n = 20
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("c%d", i))
	}
	rt := newFakeRuntime(names...)
	rt.delay = 5 * time.Millisecond // the engine takes its time: readers come while faults are applied
	m := New(rt, Limits{MaxDuration: time.Hour, MaxConcurrent: 2 * n}, Pumba{}, slog.New(slog.DiscardHandler))
	defer m.Close()
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, f := range m.List() {
				_ = f.Command + fmt.Sprint(f.Params)
				m.Get(f.ID)
			}
		}
	}()
	var starts sync.WaitGroup
	for i, c := range names {
		starts.Add(1)
		go func() {
			defer starts.Done()
			s := Spec{Type: Pause, Target: c, Duration: time.Hour}
			if i%2 == 1 {
				s = Spec{Type: CPU, Target: c, Duration: time.Hour, CPUs: 0.5}
			}
			_, err := m.Start(t.Context(), s)
			require.NoError(t, err)
		}()
	}
	starts.Wait()
	close(stop)
	readers.Wait()
	require.Len(t, m.Active(), n)
}
