package docker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/jsonstream"
	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/dockertest"
)

func TestPullProgressFoldsTheEnginesStreamIntoLayersAndBytes(t *testing.T) {
	p := newPullProgress()
	msg := func(id, status string, cur, total int64) jsonstream.Message {
		m := jsonstream.Message{ID: id, Status: status}
		if total > 0 {
			m.Progress = &jsonstream.Progress{Current: cur, Total: total}
		}
		return m
	}
	steps := []struct {
		m        jsonstream.Message
		finished bool
		want     string
	}{
		{msg("1.8.1", "Pulling from grafana/k6", 0, 0), false, "0%"},
		{msg("aaa", "Already exists", 0, 0), true, "99% (1/1 layers)"},
		{msg("bbb", "Pulling fs layer", 0, 0), false, "50% (1/2 layers)"},
		{msg("ccc", "Pulling fs layer", 0, 0), false, "33% (1/3 layers)"},
		{msg("bbb", "Downloading", 1_000_000, 4_000_000), false, "25% (1/3 layers, 1.0 of 4.0 MB)"},
		{msg("ccc", "Downloading", 500_000, 1_000_000), false, "30% (1/3 layers, 1.5 of 5.0 MB)"},
		{msg("ccc", "Download complete", 0, 0), false, "40% (1/3 layers, 2.0 of 5.0 MB)"},
		{msg("ccc", "Pull complete", 0, 0), true, "40% (2/3 layers, 2.0 of 5.0 MB)"},
		{msg("bbb", "Download complete", 0, 0), false, "99% (2/3 layers, 5.0 of 5.0 MB)"},
		{msg("bbb", "Extracting", 4_000_000, 4_000_000), false, "99% (2/3 layers, 5.0 of 5.0 MB)"},
		{msg("bbb", "Pull complete", 0, 0), true, "99% (3/3 layers, 5.0 of 5.0 MB)"},
		{msg("", "Digest: sha256:0123", 0, 0), false, "99% (3/3 layers, 5.0 of 5.0 MB)"},
	}
	for i, s := range steps {
		require.Equal(t, s.finished, p.add(s.m), "step %d: %+v", i, s.m)
		require.Equal(t, s.want, p.String(), "step %d: %+v", i, s.m)
	}
	p.complete = true // the stream ended: nothing more to announce
	require.Equal(t, "100% (3/3 layers, 5.0 of 5.0 MB)", p.String())
}

// The tests below pull from a real Distribution registry on 127.0.0.1
// into the real engine.

// logRecorder keeps the messages logged, for counting pulls.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }
func (l *logRecorder) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

func newRuntime(t *testing.T) (*Runtime, *logRecorder) {
	t.Helper()
	rt, err := New(t.Context(), "dsplab-img-test")
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	rec := &logRecorder{}
	rt.ConfigureImages(ImageOptions{Logger: slog.New(rec)})
	return rt, rec
}

func TestAMissingImageIsPulledOnceForEveryJobThatNeedsIt(t *testing.T) {
	dockertest.BuildImage(t)
	reg := dockertest.StartRegistry(t)
	ref := reg.Push(dockertest.Image, "dsplab-img-target")
	require.False(t, dockertest.HasImage(ref))
	rt, rec := newRuntime(t)

	rt.PrefetchImages(ref) // start-up, in the background
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs { // four jobs at once, while it pulls
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = rt.EnsureImages(t.Context(), ref) }()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.True(t, dockertest.HasImage(ref))
	require.Equal(t, 1, rec.count("job image pull started"), "one pull, shared: %v", rec.msgs)
	require.Equal(t, 1, rec.count("job image pulled"))
	require.Positive(t, rec.count("pulling job image"), "progress lines")
	require.Equal(t, map[string]string{ref: "present"}, rt.ImageStates())

	// Present now: with the registry gone, ensuring it asks no registry.
	reg.Stop()
	rt2, rec2 := newRuntime(t)
	require.NoError(t, rt2.EnsureImages(t.Context(), ref))
	require.Zero(t, rec2.count("job image pull started"))
	require.Equal(t, "present", rt2.ImageStates()[ref])
}

func TestAnImageThatCannotBePulledIsAnErrorNamingTheImageAndTheCause(t *testing.T) {
	dockertest.BuildImage(t)
	reg := dockertest.StartRegistry(t)
	rt, _ := newRuntime(t)

	unknown := reg.Addr + "/dsplab-img-never-pushed:1"
	err := rt.EnsureImages(t.Context(), unknown)
	var ie *ImageError
	require.ErrorAs(t, err, &ie)
	require.True(t, errors.Is(err, ErrImageUnavailable))
	require.Equal(t, unknown, ie.Image)
	require.False(t, ie.Pulling)
	require.Contains(t, err.Error(), "image "+unknown+" is not available: pull: ")
	require.Contains(t, err.Error(), "not found", "the registry's answer is the cause")
	require.Contains(t, rt.ImageStates()[unknown], "failed: pull: ")

	pushed := reg.Push(dockertest.Image, "dsplab-img-target")
	reg.Stop() // no registry: connection refused
	err = rt.EnsureImages(t.Context(), pushed)
	require.ErrorAs(t, err, &ie)
	require.Contains(t, err.Error(), "image "+pushed+" is not available: pull: ")
	require.Contains(t, err.Error(), "connection refused")

	// The registry back: the next job's ensure pulls again and succeeds.
	reg.Start()
	require.NoError(t, rt.EnsureImages(t.Context(), pushed))
	require.Equal(t, "present", rt.ImageStates()[pushed])
}

func TestAJobWaitsForItsImageOnlySoLongThenIsToldItIsStillPulling(t *testing.T) {
	dockertest.BuildImage(t)
	reg := dockertest.StartRegistry(t)
	ref := reg.Push(dockertest.Image, "dsplab-img-target")
	rt, rec := newRuntime(t)
	rt.ConfigureImages(ImageOptions{Wait: time.Nanosecond, Logger: slog.New(rec)})

	err := rt.EnsureImages(t.Context(), ref)
	var ie *ImageError
	require.ErrorAs(t, err, &ie, "a pull takes longer than 1ns")
	require.True(t, ie.Pulling)
	require.Contains(t, err.Error(), "image "+ref+" is not available: still pulling after 1ns")

	// The pull went on without the job that gave up; the next job gets it.
	rt.ConfigureImages(ImageOptions{Logger: slog.New(rec)})
	require.NoError(t, rt.EnsureImages(t.Context(), ref))
	require.Equal(t, 1, rec.count("job image pull started"))
}
