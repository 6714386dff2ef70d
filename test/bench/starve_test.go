//go:build bench

package bench

// The starvation scenarios of issue 14, against the real distributor on
// the dev stack: legitimate traffic (an open model at BENCH_LEGIT_RATE
// packets/s, default 200) runs through each attack, and the scenario
// reports its success, the distributor's peak RSS, the answers by result
// and how often an analyzer was marked down (it never is down for real).
//
//   - slow bodies: BENCH_SLOW_CONNS connections (default 1,100, more than
//     limits.max_inflight) send a body at 1 byte/s, reconnecting when cut;
//   - gzip bombs: 50 workers post ~20 KB gzip bodies that decompress to
//     20 MB (a 20 MB message line), back to back;
//   - metadata: 64 workers post 4.8 MB packets of messages with 64
//     metadata keys each, back to back.
//
// Run: make bench (every scenario for BENCH_SECONDS, default 20), or only
// these: go test -tags bench -run TestStarvation -v ./test/bench/, with
// BENCH_SCENARIO=slow|gzip|metadata for one (after the baseline).

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsplab/dsplab/internal/devstack"
	"github.com/dsplab/dsplab/internal/packettest"
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func TestStarvationScenarios(t *testing.T) {
	bins, err := devstack.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := devstack.Start(t, bins, devstack.Options{DistributorEnv: []string{"LOG_LEVEL=error"}, AnalyzerEnv: []string{"LOG_LEVEL=error"},
		DistributorConfig: os.Getenv("BENCH_DISTRIBUTOR_CONFIG")})
	url, addr := s.Distributor.URL(), strings.TrimPrefix(s.Distributor.URL(), "http://")
	secs, rate := seconds(), envInt("BENCH_LEGIT_RATE", 200)
	slowConns := envInt("BENCH_SLOW_CONNS", 1100)

	bomb := gzipBomb(20 << 20)
	meta := packettest.MetadataHeavy("meta", 4_800_000)
	scenarios := []struct {
		name   string
		attack func(stop <-chan struct{}, wg *sync.WaitGroup)
	}{
		{"baseline (no attack)", func(<-chan struct{}, *sync.WaitGroup) {}},
		{fmt.Sprintf("slow bodies: %d connections at 1 byte/s", slowConns), func(stop <-chan struct{}, wg *sync.WaitGroup) {
			for range slowConns {
				wg.Add(1)
				go func() { defer wg.Done(); slowBody(addr, stop) }()
			}
		}},
		{fmt.Sprintf("gzip bombs: 50 workers, %d KB bodies of 20 MB decompressed", len(bomb)>>10), func(stop <-chan struct{}, wg *sync.WaitGroup) {
			for range 50 {
				wg.Add(1)
				go func() { defer wg.Done(); hammer(url, bomb, "gzip", stop) }()
			}
		}},
		{"metadata: 64 workers, 4.8 MB packets of 64 metadata keys per message", func(stop <-chan struct{}, wg *sync.WaitGroup) {
			for range 64 {
				wg.Add(1)
				go func() { defer wg.Done(); hammer(url, meta, "", stop) }()
			}
		}},
	}
	fmt.Printf("starvation scenarios (%d s each, legitimate open model %d packets/s):\n", secs, rate)
	var summary []string
	only := os.Getenv("BENCH_SCENARIO") // a name prefix: "slow", "gzip", "metadata"
	for _, sc := range scenarios {
		if only != "" && !strings.HasPrefix(sc.name, only) && !strings.HasPrefix(sc.name, "baseline") {
			continue
		}
		before := scrapeCounters(t, url)
		rss := sampleRSS(s.Distributor.Pid())
		stop := make(chan struct{})
		var wg sync.WaitGroup
		sc.attack(stop, &wg)
		legit := openModel(url, rate, secs, 4096)
		close(stop)
		wg.Wait()
		peak := rss.PeakMB()
		after := scrapeCounters(t, url)
		ok := 100 * float64(legit.sent-legit.non2xx) / float64(max(legit.sent, 1))
		downs := after.sum(`distributor_analyzer_up_transitions_total`, `to="down"`) - before.sum(`distributor_analyzer_up_transitions_total`, `to="down"`)
		fmt.Printf("  %-70s legit 2xx %6.2f%% (%d sent, %d dropped, p99 %.0f ms)  peak RSS %4.0f MB  analyzer down transitions %.0f\n",
			sc.name, ok, legit.sent, legit.dropped, legit.p99, peak, downs)
		fmt.Printf("  %-70s all answers: %s\n", "", after.delta(before, "distributor_requests_total"))
		summary = append(summary, fmt.Sprintf("%s: legit=%.1f%% rss=%.0fMB downs=%.0f", strings.SplitN(sc.name, ":", 2)[0], ok, peak, downs))
	}
	fmt.Printf("RESULT starvation %s\n", strings.Join(summary, "; "))
}

// slowBody holds a connection sending a body at 1 byte/s, and opens a new
// one whenever the distributor cuts it, until stop.
func slowBody(addr string, stop <-chan struct{}) {
	for {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				continue
			}
		}
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, conn); close(done) }() // the answer, then EOF when cut
		_, err = io.WriteString(conn, "POST /ingest HTTP/1.1\r\nHost: distributor\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{")
		for err == nil {
			select {
			case <-stop:
				conn.Close()
				return
			case <-done:
				err = io.EOF
			case <-time.After(time.Second):
				_, err = conn.Write([]byte{' '})
			}
		}
		conn.Close()
	}
}

// hammer posts body back to back until stop.
func hammer(url string, body []byte, encoding string, stop <-chan struct{}) {
	client := &http.Client{Timeout: 30 * time.Second}
	for {
		select {
		case <-stop:
			return
		default:
		}
		req, _ := http.NewRequest(http.MethodPost, url+"/ingest", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if encoding != "" {
			req.Header.Set("Content-Encoding", encoding)
		}
		resp, err := client.Do(req)
		if err != nil {
			time.Sleep(10 * time.Millisecond) // a refused connection: do not spin
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// gzipBomb is a packet whose one message line is size bytes of 'a':
// ~20 KB compressed for 20 MB.
func gzipBomb(size int) []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	io.WriteString(zw, `{"emitter_id":"bomb","packet_id":1,"messages":[{"message":"`)
	chunk := bytes.Repeat([]byte{'a'}, 1<<20)
	for n := 0; n+len(chunk) < size-100; n += len(chunk) {
		zw.Write(chunk)
	}
	io.WriteString(zw, `"}]}`)
	zw.Close()
	return b.Bytes()
}

// counters are the distributor's counter samples, by series.
type counters map[string]float64

var sampleLine = regexp.MustCompile(`^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$`)

func scrapeCounters(t *testing.T, url string) counters {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := counters{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := sampleLine.FindStringSubmatch(sc.Text()); m != nil && strings.HasSuffix(m[1], "_total") {
			v, _ := strconv.ParseFloat(m[3], 64)
			out[m[1]+m[2]] = v
		}
	}
	return out
}

// sum adds the series of name whose labels contain label.
func (c counters) sum(name, label string) float64 {
	var n float64
	for k, v := range c {
		if strings.HasPrefix(k, name+"{") && strings.Contains(k, label) {
			n += v
		}
	}
	return n
}

var resultLabel = regexp.MustCompile(`result="([a-z_]+)"`)

// delta sums the increase of name since before, by result.
func (c counters) delta(before counters, name string) string {
	by := map[string]float64{}
	for k, v := range c {
		if m := resultLabel.FindStringSubmatch(k); m != nil && strings.HasPrefix(k, name+"{") {
			by[m[1]] += v - before[k]
		}
	}
	var parts []string
	for r, n := range by {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%.0f", r, n))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
