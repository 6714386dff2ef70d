package traffic

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
)

// fakeRuntime creates job containers that run until stopped; each creation
// takes a few milliseconds, as the engine's does.
type fakeRuntime struct {
	created atomic.Int64
	mu      sync.Mutex
	exited  map[string]chan struct{}
}

func (r *fakeRuntime) ch(id string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exited == nil {
		r.exited = map[string]chan struct{}{}
	}
	if r.exited[id] == nil {
		r.exited[id] = make(chan struct{})
	}
	return r.exited[id]
}

func (r *fakeRuntime) ProjectNetwork(context.Context, string) (string, error) { return "net", nil }
func (r *fakeRuntime) CreateJob(_ context.Context, j docker.JobSpec) (string, error) {
	time.Sleep(5 * time.Millisecond)
	r.created.Add(1)
	r.ch(j.Name)
	return j.Name, nil
}
func (r *fakeRuntime) CopyDir(context.Context, string, string, string) error { return nil }
func (r *fakeRuntime) Start(context.Context, string) error                   { return nil }
func (r *fakeRuntime) Stop(_ context.Context, id string, _ time.Duration) error {
	ch := r.ch(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
	return nil
}
func (r *fakeRuntime) Wait(ctx context.Context, id string) (int64, error) {
	select {
	case <-r.ch(id):
		return 0, nil
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}
func (r *fakeRuntime) ReadFile(context.Context, string, string, int64) ([]byte, error) {
	return []byte(`{}`), nil
}
func (r *fakeRuntime) Logs(context.Context, string, int) (string, error)        { return "", nil }
func (r *fakeRuntime) Jobs(context.Context, string) ([]docker.Container, error) { return nil, nil }
func (r *fakeRuntime) Remove(context.Context, string) error                     { return nil }
func (r *fakeRuntime) EnsureImages(context.Context, ...string) error            { return nil }

// The cap on running jobs holds under concurrent starts: a slot is taken
// under the lock before the container is created, not counted first and
// created after (30 concurrent starts used to make 30 jobs).
func TestConcurrentStartsNeverExceedTheJobCap(t *testing.T) {
	rt := &fakeRuntime{}
	ctx, cancel := context.WithCancel(context.Background())
	m := New(ctx, rt, Config{Image: "k6", MaxRPS: 100, MaxDuration: time.Hour, MaxJobs: 3}, slog.New(slog.DiscardHandler))
	defer func() { cancel(); m.Wait() }()
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	start := make(chan struct{})
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := m.Start(context.Background(), Spec{TargetURL: "http://x:1", RPS: 1, Duration: time.Minute})
			if err != nil {
				require.ErrorContains(t, err, "the cap is 3")
				refused.Add(1)
				return
			}
			ok.Add(1)
		}()
	}
	close(start)
	wg.Wait()
	require.EqualValues(t, 3, ok.Load())
	require.EqualValues(t, 27, refused.Load())
	require.EqualValues(t, 3, rt.created.Load(), "no container is created beyond the cap")
	require.Equal(t, 3, m.Running())
}
