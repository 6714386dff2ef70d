package httpserver

import (
	"context"
	"io"
	"log/slog"
	"net/http"
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

func TestMaxConnectionsKeepsExtraClientsWaitingInsteadOfServed(t *testing.T) {
	var mu sync.Mutex
	inside, most := 0, 0
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One connection per client: no keep-alive sharing.
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			if resp, err := c.Get("http://" + s.Addr()); err == nil {
				resp.Body.Close()
			}
		}()
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return inside == 2 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // the others stay queued, not served
	mu.Lock()
	require.Equal(t, 2, most)
	mu.Unlock()
	close(release)
	wg.Wait() // and every client is served in the end
}
