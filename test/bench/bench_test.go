//go:build bench

package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsplab/dsplab/internal/devstack"
)

// Durations can be shortened for a quick look: BENCH_SECONDS=5 make bench.
func seconds() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_SECONDS")); err == nil && n > 0 {
		return n
	}
	return 20
}

// The load is the seed log-streamer's packet format, as its emitter sends
// it (test/integration/seed_test.go's seedPacket): a string packet id after the
// messages, and per message an integer timestamp in milliseconds, an
// upper-case level, a short message and three metadata keys; ~830 bytes
// for 5 messages. wrkScript builds it in Lua, seedBody in Go.
const wrkScript = `
local counter = 0
local levels = {"INFO", "WARN", "ERROR", "DEBUG"}
local topics = {"auth", "database", "api", "cache", "queue"}
local thread_id = 0
local run = "0"
setup = function(thread) thread:set("id", thread_id); thread_id = thread_id + 1 end
init = function(args) run = args[1] or "0" end
request = function()
  counter = counter + 1
  local ts = os.time() * 1000 + counter % 1000
  local msgs = {}
  for i = 1, 5 do
    msgs[i] = string.format('{"timestamp":%d,"level":"%s","message":"Sample log message %d from %s","metadata":{"service":"demo-service","version":"1.0.0","instance":"instance-%d"}}',
      ts, levels[(counter + i) % 4 + 1], i, topics[(counter + i) % 5 + 1], (counter + i) % 10)
  end
  local body = '{"emitter_id":"wrk-' .. tostring(id) .. '","messages":[' .. table.concat(msgs, ",") .. '],"packet_id":"wrk-' .. run .. '-' .. tostring(id) .. '-' .. counter .. '"}'
  return wrk.format("POST", "/ingest", {["Content-Type"]="application/json"}, body)
end
`

// seedBody is packet id of emitter in the seed's format (see wrkScript).
func seedBody(emitter string, id int) string {
	levels := [...]string{"INFO", "WARN", "ERROR", "DEBUG"}
	topics := [...]string{"auth", "database", "api", "cache", "queue"}
	ts := time.Now().UnixMilli()
	var b strings.Builder
	fmt.Fprintf(&b, `{"emitter_id":%q,"messages":[`, emitter)
	for i := 1; i <= 5; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"timestamp":%d,"level":"%s","message":"Sample log message %d from %s","metadata":{"service":"demo-service","version":"1.0.0","instance":"instance-%d"}}`,
			ts, levels[(id+i)%4], i, topics[(id+i)%5], (id+i)%10)
	}
	fmt.Fprintf(&b, `],"packet_id":"%s-%d"}`, emitter, id)
	return b.String()
}

type wrkResult struct {
	rps, non2xxShare, p50ms, p99ms float64
	requests, non2xx               int
}

// runWrk runs wrk closed-loop: 2 threads, conns connections.
func runWrk(t *testing.T, url string, conns, secs int) wrkResult {
	t.Helper()
	script := filepath.Join(t.TempDir(), "post.lua")
	os.WriteFile(script, []byte(wrkScript), 0o644)
	out, err := exec.Command("wrk", "-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", secs), "--latency", "-s", script, url,
		"--", strconv.FormatInt(time.Now().UnixNano(), 36)).CombinedOutput() // a run tag: packet ids unique across runs
	if err != nil {
		t.Fatalf("wrk (apt-get install wrk): %v\n%s", err, out)
	}
	s := string(out)
	var r wrkResult
	r.rps = parseFloat(regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`), s)
	r.requests = int(parseFloat(regexp.MustCompile(`(\d+) requests in`), s))
	r.non2xx = int(parseFloat(regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`), s))
	if r.requests > 0 {
		r.non2xxShare = float64(r.non2xx) / float64(r.requests)
	}
	r.p50ms = wrkLatency(regexp.MustCompile(`\s50%\s+([0-9.]+)(us|ms|s)`), s)
	r.p99ms = wrkLatency(regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`), s)
	return r
}

func parseFloat(re *regexp.Regexp, s string) float64 {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return f
}

func wrkLatency(re *regexp.Regexp, s string) float64 {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "us":
		return f / 1000
	case "s":
		return f * 1000
	}
	return f
}

// rssSampler records the peak resident set of a process while it runs.
type rssSampler struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			if kb := rssKB(pid); kb > s.peak.Load() {
				s.peak.Store(kb)
			}
			select {
			case <-s.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *rssSampler) PeakMB() float64 {
	close(s.stop)
	<-s.done
	return float64(s.peak.Load()) / 1024
}

func rssKB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(sc.Text())[1], 10, 64)
			return n
		}
	}
	return 0
}

// nullServer reads the body and answers 202: the bound of what any Go HTTP
// handler can do here, measured with the same wrk load.
func nullServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"accepted","packet_id":"1"}`)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

type openResult struct {
	sent, non2xx, dropped int
	p50, p99, p999        float64 // ms
	// failed counts the non2xx that got no answer at all (a transport
	// error or the client's 10 s timeout), firstErr says the first one.
	failed   int
	firstErr string
}

// openModel sends rate packets/s for secs seconds on a fixed schedule,
// whatever the latency (an open model); latency is measured from the
// scheduled time, so queueing in the client counts (no coordinated
// omission). At most maxInflight requests are outstanding; beyond that a
// request is dropped and counted.
func openModel(url string, rate, secs, maxInflight int) openResult {
	emitter := "open-" + strconv.FormatInt(time.Now().UnixNano(), 36) // packet ids unique across runs
	tr := &http.Transport{MaxIdleConns: maxInflight, MaxIdleConnsPerHost: maxInflight, IdleConnTimeout: time.Minute}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	var mu sync.Mutex
	var lat []float64
	var res openResult
	var inflight atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	total := rate * secs
	interval := time.Second / time.Duration(rate)
	for i := 0; i < total; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		if inflight.Load() >= int64(maxInflight) {
			res.dropped++
			continue
		}
		inflight.Add(1)
		wg.Add(1)
		go func(id int, at time.Time) {
			defer wg.Done()
			defer inflight.Add(-1)
			resp, err := client.Post(url+"/ingest", "application/json", strings.NewReader(seedBody(emitter, id)))
			ok := err == nil && resp.StatusCode/100 == 2
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			mu.Lock()
			lat = append(lat, float64(time.Since(at).Microseconds())/1000)
			if !ok {
				res.non2xx++
			}
			if err != nil {
				if res.failed++; res.firstErr == "" {
					res.firstErr = err.Error()
				}
			}
			mu.Unlock()
		}(i, at)
	}
	wg.Wait()
	res.sent = len(lat)
	sort.Float64s(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	res.p50, res.p99, res.p999 = q(0.50), q(0.99), q(0.999)
	return res
}

// results reads distributor_requests_total summed by result (its series
// are also split by endpoint), so a run shows why answers were not 2xx.
func results(t *testing.T, url string) map[string]float64 {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	re := regexp.MustCompile(`^distributor_requests_total\{[^}]*result="([a-z_]+)"[^}]*\} ([0-9.e+]+)`)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			out[m[1]] += v
		}
	}
	return out
}

// resultsSince is the answers by result since before (results), the
// results with none left out.
func resultsSince(t *testing.T, url string, before map[string]float64) string {
	var parts []string
	for k, v := range results(t, url) {
		if d := v - before[k]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s=%.0f", k, d))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// e2eBuckets scrapes analyzer_end_to_end_latency_seconds buckets of all
// analyzers (cumulative counts by le).
func e2eBuckets(t *testing.T, s *devstack.Stack) map[float64]float64 {
	out := map[float64]float64{}
	re := regexp.MustCompile(`^analyzer_end_to_end_latency_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} ([0-9.e+]+)`)
	for _, a := range s.Analyzers {
		resp, err := http.Get(a.URL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				le, _ := strconv.ParseFloat(m[1], 64)
				if m[1] == "+Inf" {
					le = 1e9
				}
				v, _ := strconv.ParseFloat(m[2], 64)
				out[le] += v
			}
		}
		resp.Body.Close()
	}
	return out
}

// quantileMs estimates a quantile from the increase of cumulative buckets
// (upper bound of the bucket it falls in).
func quantileMs(before, after map[float64]float64, q float64) float64 {
	var les []float64
	for le := range after {
		les = append(les, le)
	}
	sort.Float64s(les)
	total := after[1e9] - before[1e9]
	if total <= 0 {
		return 0
	}
	for _, le := range les {
		if after[le]-before[le] >= q*total {
			return le * 1000
		}
	}
	return 0
}

func TestDistributorBenchmark(t *testing.T) {
	dir := t.TempDir()
	bins, err := devstack.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	secs := seconds()
	// BENCH_DISTRIBUTOR_CONFIG: a config file's YAML for the distributor,
	// to compare settings (e.g. "kafka: {batch_timeout: 5ms}").
	denv := []string{"LOG_LEVEL=error"}
	if os.Getenv("BENCH_PROFILE") != "" || os.Getenv("BENCH_TRACE") != "" {
		denv = append(denv, "PPROF=true") // /debug/pprof/ is off by default
	}
	// BENCH_GCTRACE=file: the distributor runs with GODEBUG=gctrace=1 and
	// its collections (one line each, with their pauses) are saved to file.
	if os.Getenv("BENCH_GCTRACE") != "" {
		denv = append(denv, "GODEBUG=gctrace=1")
	}
	// BENCH_ANALYZER_ENV: extra analyzer environment, comma-separated, to
	// compare settings (e.g. "LEDGER_TOPIC=" for the ledger off).
	aenv := []string{"LOG_LEVEL=error"}
	if v, ok := os.LookupEnv("BENCH_ANALYZER_ENV"); ok {
		aenv = append(aenv, strings.Split(v, ",")...)
	}
	s := devstack.Start(t, bins, devstack.Options{DistributorEnv: denv, AnalyzerEnv: aenv,
		DistributorConfig: os.Getenv("BENCH_DISTRIBUTOR_CONFIG")})
	url := s.Distributor.URL()
	pid := s.Distributor.Pid()

	runWrk(t, url, 32, 3) // warm-up
	rss := sampleRSS(pid)
	procs := map[string]*devstack.Proc{"distributor": s.Distributor, "devkafka": s.Kafka}
	for i, a := range s.Analyzers {
		procs[fmt.Sprintf("analyzer-%d", i+1)] = a
	}
	cpuBefore := cpuSeconds(procs)
	// BENCH_PROFILE=file saves a CPU profile of the distributor taken
	// during the saturation phase (go tool pprof file).
	profDone := make(chan struct{})
	go func() {
		defer close(profDone)
		if path := os.Getenv("BENCH_PROFILE"); path != "" {
			saveProfile(t, url, path, max(secs-2, 1))
		}
	}()
	sat := runWrk(t, url, 32, secs)
	<-profDone
	cpuAfter := cpuSeconds(procs)
	satRSS := rss.PeakMB()
	accepted := sat.rps * (1 - sat.non2xxShare)
	null := runWrk(t, nullServer(t), 32, secs)
	fmt.Printf("saturation (wrk -t2 -c32 -d%ds, 5-message packets in the seed's format):\n", secs)
	fmt.Printf("  distributor  %8.0f req/s  accepted %8.0f packets/s = %8.0f messages/s  non-2xx %5.2f%%  p50 %6.2f ms  p99 %6.2f ms  peak RSS %.0f MB\n",
		sat.rps, accepted, accepted*5, sat.non2xxShare*100, sat.p50ms, sat.p99ms, satRSS)
	fmt.Printf("  distributor answers by result: %s\n", resultsSince(t, url, nil))
	fmt.Printf("  CPU during saturation (cores used; µs of CPU per accepted packet):")
	for _, name := range sortedKeys(cpuAfter) {
		used := cpuAfter[name] - cpuBefore[name]
		fmt.Printf("  %s %.2f (%.0f µs)", name, used/float64(secs), used*1e6/(accepted*float64(secs)))
	}
	fmt.Println()
	fmt.Printf("  null handler %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms\n", null.rps, null.p50ms, null.p99ms)
	ratio := accepted / null.rps

	var p99at5000, e2eP50, e2eP99 float64
	fmt.Printf("open model (%ds each, latency from the scheduled send time):\n", secs)
	for _, rate := range []int{1000, 5000, 10000} {
		var before map[float64]float64
		if rate == 5000 {
			before = e2eBuckets(t, s)
		}
		// BENCH_TRACE=file saves an execution trace of the distributor
		// during the 5,000/s phase (go tool trace file), 5 s at most.
		traceDone := make(chan struct{})
		go func() {
			defer close(traceDone)
			if path := os.Getenv("BENCH_TRACE"); path != "" && rate == 5000 {
				saveFrom(t, fmt.Sprintf("%s/debug/pprof/trace?seconds=%d", url, min(secs-1, 5)), path)
			}
		}()
		answered := results(t, url)
		waitBefore := runQueueWait(procs)
		r := openModel(url, rate, secs, 4096)
		waitAfter := runQueueWait(procs)
		<-traceDone
		if rate == 5000 {
			p99at5000 = r.p99
			time.Sleep(2 * time.Second) // let the analyzers finish
			after := e2eBuckets(t, s)
			e2eP50, e2eP99 = quantileMs(before, after, 0.5), quantileMs(before, after, 0.99)
		}
		fmt.Printf("  %6d packets/s  sent %7d  non-2xx %5.2f%%  dropped %d  p50 %7.2f ms  p99 %7.2f ms  p99.9 %7.2f ms\n",
			rate, r.sent, 100*float64(r.non2xx)/float64(max(r.sent, 1)), r.dropped, r.p50, r.p99, r.p999)
		fmt.Printf("          the distributor's answers by result: %s; no answer: %d %s\n", resultsSince(t, url, answered), r.failed, r.firstErr)
		fmt.Printf("          threads waiting for a core (s per s, summed over each process's threads):")
		for _, name := range sortedKeys(waitAfter) {
			fmt.Printf("  %s %.2f", name, (waitAfter[name]-waitBefore[name])/float64(secs))
		}
		if len(waitAfter) == 0 {
			fmt.Print("  not known: this kernel has no /proc/<pid>/task/<tid>/schedstat")
		}
		fmt.Println()
	}
	fmt.Printf("ingest-to-processed latency at 5000 packets/s (analyzer histogram, bucket upper bounds): p50 <= %.1f ms, p99 <= %.1f ms\n", e2eP50, e2eP99)

	over := int(2 * accepted)
	rss = sampleRSS(pid)
	o := openModel(url, over, secs, 8192)
	overRSS := rss.PeakMB()
	fmt.Printf("2x overload (%d packets/s open model): non-2xx %5.2f%%  dropped %d  peak RSS %.0f MB\n",
		over, 100*float64(o.non2xx)/float64(max(o.sent, 1)), o.dropped, overRSS)

	if path := os.Getenv("BENCH_GCTRACE"); path != "" {
		saveGCTrace(t, s.Distributor.Logs(), path)
	}
	fmt.Printf("RESULT accepted_packets_per_s=%.0f ratio_to_null=%.2f p99_ms_at_5000=%.2f peak_rss_mb=%.0f (2x overload %.0f)\n",
		accepted, ratio, p99at5000, satRSS, overRSS)
}

// cpuSeconds reads each process's user+system CPU time from /proc/<pid>/stat.
func cpuSeconds(procs map[string]*devstack.Proc) map[string]float64 {
	out := map[string]float64{}
	for name, p := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces) start at ") ".
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		out[name] = (utime + stime) / 100 // USER_HZ is 100 on Linux
	}
	return out
}

// runQueueWait reads, for each process and for this one (the load
// generator), the time its threads have spent runnable but waiting for a
// core: the second field of /proc/<pid>/task/<tid>/schedstat, summed.
// Threads that ended are not counted, so it is read around a phase. On a
// machine whose cores the stack shares, this is where latency goes when
// no process is slow by itself (docs/BENCHMARKS.md, "Threads waiting for a
// core").
func runQueueWait(procs map[string]*devstack.Proc) map[string]float64 {
	pids := map[string]int{"load generator": os.Getpid()}
	for name, p := range procs {
		pids[name] = p.Pid()
	}
	out := map[string]float64{}
	for name, pid := range pids {
		eachThread(pid, "schedstat", func(b []byte) {
			if f := strings.Fields(string(b)); len(f) >= 2 {
				if ns, err := strconv.ParseFloat(f[1], 64); err == nil {
					out[name] += ns / 1e9
				}
			}
		})
	}
	return out
}

// threadSwitches is the number of times pid's threads have gone to sleep
// or been preempted (voluntary_ctxt_switches + nonvoluntary_ctxt_switches
// of /proc/<pid>/task/<tid>/status, summed). Threads that ended are not
// counted, so it is read around a phase.
func threadSwitches(pid int) float64 {
	n := 0.0
	eachThread(pid, "status", func(b []byte) {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				n += f
			}
		}
	})
	return n
}

// eachThread calls fn with /proc/<pid>/task/<tid>/<file> of each of pid's
// threads that is still there.
func eachThread(pid int, file string, fn func([]byte)) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return
	}
	for _, task := range tasks {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/%s", pid, task.Name(), file)); err == nil {
			fn(b)
		}
	}
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// saveGCTrace writes the gctrace lines of logs to path.
func saveGCTrace(t *testing.T, logs, path string) {
	var lines []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.HasPrefix(l, "gc ") {
			lines = append(lines, l)
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Errorf("gctrace: %v", err)
	}
	fmt.Printf("distributor GC: %d collections, lines in %s\n", len(lines), path)
}

func saveProfile(t *testing.T, url, path string, secs int) {
	saveFrom(t, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", url, secs), path)
}

// saveFrom saves what url answers to path (a profile or a trace).
func saveFrom(t *testing.T, url, path string) {
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		t.Errorf("profile: %v", err)
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}
