package app

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rawRequest writes head and body on a new TCP connection, half-closes it
// when closeWrite is set, and returns the status line and the response.
func rawRequest(t *testing.T, addr, head, body string, closeWrite bool) (string, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	_, err = io.WriteString(conn, head+body)
	require.NoError(t, err)
	if closeWrite {
		conn.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status, string(b)
}

// Framing errors are the client's: a bad chunk size or a body shorter
// than its Content-Length is 400 (it was 500), counted as bad_request,
// and 10 of them among 100 requests do not take health down (they did:
// 10% server faults, over the 5% threshold).
func TestFramingErrorsAre400AndNotServerFaults(t *testing.T) {
	s := startStack(t, "")
	addr := s.app.Addr()
	head := "POST /ingest HTTP/1.1\r\nHost: distributor\r\nContent-Type: application/json\r\n"
	for i := range 100 {
		var status, body string
		switch {
		case i%10 == 3 && i%20 < 10:
			status, body = rawRequest(t, addr, head+"Transfer-Encoding: chunked\r\n\r\n", "zz\r\n{}\r\n0\r\n\r\n", false)
		case i%10 == 3:
			status, body = rawRequest(t, addr, head+"Content-Length: 100\r\n\r\n", packet("short", i)[:20], true)
		default:
			code, b := s.do(t, http.MethodPost, "/ingest", packet("framing", i))
			require.Equal(t, http.StatusAccepted, code, b)
			continue
		}
		require.Equal(t, "400 Bad Request", status, body)
		require.Contains(t, body, `"error":"request body: `)
	}
	v := s.app.tracker.Evaluate(0)
	require.EqualValues(t, 100, v.Requests)
	require.Zero(t, v.ErrorRate, "framing errors are not server faults")
	require.True(t, v.HealthUp)
	require.EqualValues(t, 10, s.requests(t, "ingest", "bad_request"))
}

// A slow body is cut at limits.body_read_timeout (408, connection
// closed), and while slow clients trickle their bodies they hold no
// max_inflight slot: here 4 slow clients and max_inflight 2, and every
// legitimate request meanwhile is accepted (before, the slow clients held
// the slots until they finished, and the rest got 503).
func TestSlowBodiesAreCutAtTheBudgetAndHoldNoInflightSlot(t *testing.T) {
	s := startStack(t, "limits: {body_read_timeout: 1s, max_inflight: 2}\n")
	addr := s.app.Addr()
	type result struct {
		status  string
		elapsed time.Duration
		closed  bool
	}
	results := make(chan result, 4)
	for range 4 {
		go func() {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				results <- result{status: err.Error()}
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			start := time.Now()
			io.WriteString(conn, "POST /ingest HTTP/1.1\r\nHost: distributor\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // one byte every 50 ms: the whole body would take 50 s
				defer wg.Done()
				for {
					if _, err := conn.Write([]byte{' '}); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}()
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			close(stop)
			wg.Wait()
			if err != nil {
				results <- result{status: err.Error()}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			_, err = br.ReadByte()
			results <- result{status: resp.Status, elapsed: time.Since(start), closed: err != nil}
		}()
	}
	codes := map[int]int{}
	var got []result
	sent := 0
	for len(got) < 4 {
		select {
		case r := <-results:
			got = append(got, r)
		default:
			sent++
			code, body := s.do(t, http.MethodPost, "/ingest", packet("legit", sent))
			codes[code]++
			if code != http.StatusAccepted {
				t.Logf("%d %s", code, body)
			}
		}
	}
	for _, r := range got {
		require.Equal(t, "408 Request Timeout", r.status)
		require.True(t, r.closed, "the connection is closed after the 408")
		require.Less(t, r.elapsed, 5*time.Second, "cut near the 1 s budget, not after the whole body")
	}
	require.Greater(t, codes[http.StatusAccepted], 0)
	require.Equal(t, map[int]int{http.StatusAccepted: codes[http.StatusAccepted]}, codes, "legitimate requests during the attack")
	code, _ := s.do(t, http.MethodPost, "/ingest", packet("after", 1))
	require.Equal(t, http.StatusAccepted, code, "nothing is left held")
	require.EqualValues(t, 4, s.requests(t, "ingest", "bad_request"), "a slow client is the client's problem")
}

func (s *stack) requests(t *testing.T, endpoint, result string) int64 {
	t.Helper()
	return s.counter(t, "distributor_requests", map[string]string{"endpoint": endpoint, "result": result})
}
