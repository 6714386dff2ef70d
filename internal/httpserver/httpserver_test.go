package httpserver

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestServesOnAnEphemeralPortAndLetsInFlightRequestsFinishOnShutdown(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	s, err := Listen("127.0.0.1:0", h, Options{Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: 5 * time.Second})
	require.NoError(t, err)
	require.NotContains(t, s.Addr(), ":0")
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error)
	go func() { runErr <- s.Run(ctx) }()

	got := make(chan string)
	go func() {
		resp, err := http.Get("http://" + s.Addr())
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	cancel() // shutdown begins while the request is in flight
	close(release)
	require.Equal(t, "done", <-got)
	require.NoError(t, <-runErr)
	_, err = http.Get("http://" + s.Addr())
	require.Error(t, err, "the listener is closed after Run returns")
}

func TestMaxConnectionsAnswersExtraClientsWithAFast503(t *testing.T) {
	var mu sync.Mutex
	inside, most := 0, 0
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/quick" {
			return
		}
		mu.Lock()
		inside++
		most = max(most, inside)
		mu.Unlock()
		<-release
		mu.Lock()
		inside--
		mu.Unlock()
	})
	s, err := Listen("127.0.0.1:0", h, Options{Logger: slog.New(slog.DiscardHandler), MaxConnections: 2})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	// One connection per client: no keep-alive sharing.
	client := func() *http.Client {
		return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	}
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := client().Get("http://" + s.Addr() + "/slow"); err == nil {
				resp.Body.Close()
			}
		}()
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return inside == 2 }, 5*time.Second, 10*time.Millisecond)
	// Both slots are taken: more clients get a 503 at once (they used to
	// wait in the accept queue until a slot freed), with or without a body.
	for i := 0; i < 3; i++ {
		start := time.Now()
		resp, err := client().Post("http://"+s.Addr()+"/quick", "application/json", strings.NewReader(strings.Repeat("x", 10_000)))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.Equal(t, "1", resp.Header.Get("Retry-After"))
		require.JSONEq(t, `{"error":"overloaded: too many open connections","retry_after_seconds":1}`, string(body))
		require.Less(t, time.Since(start), 2*time.Second, "the answer must not wait for a slot")
	}
	require.EqualValues(t, 3, s.ShedConnections())
	mu.Lock()
	require.Equal(t, 2, most)
	mu.Unlock()
	close(release)
	wg.Wait()
	// The slots are free again once the connections close.
	require.Eventually(t, func() bool {
		resp, err := client().Get("http://" + s.Addr() + "/quick")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 20*time.Millisecond)
}

// Idle keep-alive connections hold their slots too; a new client is not
// left hanging behind them.
func TestIdleKeepAliveConnectionsDoNotLeaveNewClientsHanging(t *testing.T) {
	s, err := Listen("127.0.0.1:0", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), Options{Logger: slog.New(slog.DiscardHandler), MaxConnections: 1})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	keeper := &http.Client{Transport: &http.Transport{}}
	resp, err := keeper.Get("http://" + s.Addr())
	require.NoError(t, err)
	resp.Body.Close() // the connection stays open, idle, in keeper's pool
	other := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	resp, err = other.Get("http://" + s.Addr())
	require.NoError(t, err, "a new client must get an answer, not wait for the idle connection to close")
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	keeper.CloseIdleConnections()
	require.Eventually(t, func() bool {
		resp, err := other.Get("http://" + s.Addr())
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 20*time.Millisecond)
}
