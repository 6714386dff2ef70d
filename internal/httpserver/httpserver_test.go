package httpserver

import (
	"context"
	"io"
	"log/slog"
	"net/http"
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
