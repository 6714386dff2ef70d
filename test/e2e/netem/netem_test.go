//go:build netemvm

// Package netem is the netem part of the e2e suite. It runs INSIDE the
// netem VM (test/e2e/netem/run.sh builds this test binary on the host and
// test/e2e/netem/vm-run.sh runs it in Debian's kernel, which has sch_netem),
// against the VM's Docker engine: the platform API (bin/platform-api, a
// process beside the engine), Pumba's stand-in with Debian's tc in its
// nettools image, and a target container. Every netem fault type is
// started through the platform API, its effect measured from outside the
// target (HTTP latency and iputils ping from the VM to the target's
// address), then stopped through the API; no qdisc may be left in the
// target's namespace. See test/e2e/README.md ("Network faults for real").
//
// NETEM_SUBSET=ci (make e2e-netem NETEM_SUBSET=ci) runs every test with the
// same checks on fewer samples (sized so that a fault that does nothing
// still fails every check it failed before), for a machine where the full
// samples (what .ci/run runs) do not fit.
package netem

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	project = "netem"
	network = "netem_default"
	target  = "netem-target-1"
	api     = "http://127.0.0.1:5050/api"
)

var (
	pumbaImage    = env("NETEM_PUMBA_IMAGE", "dsplab-e2e/pumba:standin")
	nettoolsImage = env("NETEM_NETTOOLS_IMAGE", "dsplab-e2e/nettools:debian")
	targetImage   = env("NETEM_TARGET_IMAGE", "dsplab/analyzer:dev")
	platformBin   = env("NETEM_PLATFORM_BIN", "/src/bin/platform-api")
	targetIP      string
	// targetPID is the target's process: tc reads its network namespace.
	targetPID string
	// ciSubset: NETEM_SUBSET=ci, the smaller samples.
	ciSubset = os.Getenv("NETEM_SUBSET") == "ci"
)

// sized is full, or ci under NETEM_SUBSET=ci.
func sized[T any](full, ci T) T {
	if ciSubset {
		return ci
	}
	return full
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestMain lays out a one-service compose-like project (labels as compose
// sets them) and starts the platform API on it.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "netem setup:", err); return 1 }
	docker("rm", "-f", target)
	docker("network", "rm", network)
	if out, err := docker("network", "create", "--label", "com.docker.compose.project="+project, "--label", "com.docker.compose.network=default", network); err != nil {
		return fail(fmt.Errorf("network create: %v: %s", err, out))
	}
	defer docker("network", "rm", network)
	out, err := docker("run", "-d", "--name", target, "--network", network, "--network-alias", "target",
		"--label", "com.docker.compose.project="+project, "--label", "com.docker.compose.service=target", "--label", "dsplab.role=target",
		"-e", "PORT=9001", "-e", "ANALYZER_ID=target", "-e", "KAFKA_BROKERS=127.0.0.1:1", "-e", "LOG_LEVEL=error", targetImage)
	if err != nil {
		return fail(fmt.Errorf("run target: %v: %s", err, out))
	}
	defer docker("rm", "-f", target)
	if targetIP, err = docker("inspect", "-f", `{{(index .NetworkSettings.Networks "`+network+`").IPAddress}}`, target); err != nil {
		return fail(err)
	}
	if targetPID, err = docker("inspect", "-f", "{{.State.Pid}}", target); err != nil || targetPID == "0" {
		return fail(fmt.Errorf("target's pid: %v: %s", err, targetPID))
	}
	state, _ := os.MkdirTemp("", "platform-state-")
	p := exec.Command(platformBin)
	p.Env = append(os.Environ(), "PORT=5050", "COMPOSE_PROJECT="+project, "PUMBA_IMAGE="+pumbaImage, "PUMBA_NETTOOLS_IMAGE="+nettoolsImage,
		"STATE_DIR="+state, "PROMETHEUS_URL=http://127.0.0.1:1", "GRAFANA_URL=", "EXPERIMENTS_DIR=/src/experiments", "LOG_LEVEL=warn",
		"OTEL_SDK_DISABLED=true", "IMAGE_PULL_WAIT_SECONDS=5")
	logf, _ := os.Create("platform-api.log")
	p.Stdout, p.Stderr = logf, logf
	if err := p.Start(); err != nil {
		return fail(err)
	}
	defer func() { p.Process.Signal(os.Interrupt); p.Wait() }()
	for i := 0; ; i++ {
		if r, err := http.Get("http://127.0.0.1:5050/health"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		if i > 120 {
			return fail(fmt.Errorf("platform API not healthy after 60 s (platform-api.log)"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	code := m.Run()
	stackDown() // the presets' stack (presets_test.go), if it was started
	return code
}

// call is one platform API request; it returns the status and the body.
func call(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, api+path, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// qdiscs is "tc qdisc show dev eth0" in the target's network namespace:
// the VM's own tc (Debian's iproute2, as in the nettools image) entered
// into it with nsenter, which costs milliseconds where a nettools
// container costs seconds under emulation.
func qdiscs(t *testing.T) string {
	b, err := exec.Command("nsenter", "-t", targetPID, "-n", "tc", "qdisc", "show", "dev", "eth0").CombinedOutput()
	out := strings.TrimSpace(string(b))
	require.NoError(t, err, out)
	require.Contains(t, out, "qdisc", "tc shows the target's eth0")
	return out
}

// withFault starts spec through the API, waits until its qdisc is in the
// target's namespace, runs during, stops the fault through the API and
// checks that no netem qdisc is left.
func withFault(t *testing.T, spec map[string]any, during func()) {
	t.Helper()
	spec["target"], spec["durationSeconds"] = "target", 600
	code, f := call(t, "POST", "/faults", spec)
	require.Equal(t, http.StatusCreated, code, "%v", f)
	id := f["id"].(string)
	t.Logf("fault %s: %v", id, f["command"])
	var shown string
	require.Eventually(t, func() bool { shown = qdiscs(t); return strings.Contains(shown, "netem") }, 3*time.Minute, 500*time.Millisecond,
		"the netem qdisc appears in the target's namespace")
	t.Logf("while active: %s", shown)
	during()
	code, f = call(t, "POST", "/faults/"+id+"/stop", nil)
	require.Equal(t, http.StatusOK, code, "%v", f)
	require.Eventually(t, func() bool { _, g := call(t, "GET", "/faults/"+id, nil); return g["state"] == "reverted" }, 3*time.Minute, time.Second)
	require.Eventually(t, func() bool { shown = qdiscs(t); return !strings.Contains(shown, "netem") }, time.Minute, 500*time.Millisecond,
		"no netem qdisc is left after the stop")
	t.Logf("after the stop: %s", shown)
}

// latencies are n sequential GET /health on one kept-alive connection.
func latencies(t *testing.T, n int) []time.Duration {
	c := &http.Client{Timeout: 10 * time.Second}
	var out []time.Duration
	for range n {
		start := time.Now()
		r, err := c.Get("http://" + targetIP + ":9001/health")
		require.NoError(t, err)
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out
}

func q(d []time.Duration, p float64) time.Duration { return d[int(p*float64(len(d)-1))] }

type pinged struct {
	sent, received, dups, bad int
	rtts                      []float64 // ms, sorted
}

var rttRe = regexp.MustCompile(`time=([0-9.]+) ms`)

// ping is iputils ping from the VM to the target (replies are the
// target's egress, where netem acts). It is bounded twice: ping's own
// deadline (-w) and a kill after 90 s (a ping hung under corrupt once).
func ping(t *testing.T, args ...string) pinged {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if !slices.Contains(args, "-w") {
		args = append(args, "-w", "30")
	}
	out, err := exec.CommandContext(ctx, "ping", append(args, "-n", targetIP)...).CombinedOutput()
	if ctx.Err() != nil {
		t.Logf("ping %v killed after 90 s: %v", args, err)
	}
	var p pinged
	for _, l := range strings.Split(string(out), "\n") {
		if m := rttRe.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			p.rtts = append(p.rtts, v)
		}
		if strings.Contains(l, "DUP!") {
			p.dups++
		}
		if strings.Contains(l, "BAD CHECKSUM") || strings.Contains(l, "wrong data") {
			p.bad++
		}
		if strings.Contains(l, "packets transmitted") {
			fmt.Sscanf(l, "%d packets transmitted, %d received", &p.sent, &p.received)
		}
	}
	slices.Sort(p.rtts)
	return p
}

// probe is count pings, one every interval seconds, each reply awaited 2 s:
// ping's deadline is the sending time plus 5 s, so a lossy run ends soon
// after its last request instead of at a fixed 30 s (with -w, ping goes on
// sending until count replies came or the deadline passed: a lossy run
// sends more than count, and its loss is received/sent of what it sent).
func probe(t *testing.T, count int, interval float64, extra ...string) pinged {
	deadline := int(float64(count)*interval) + 5
	args := append([]string{"-c", strconv.Itoa(count), "-i", strconv.FormatFloat(interval, 'f', -1, 64), "-W", "2", "-w", strconv.Itoa(deadline)}, extra...)
	return ping(t, args...)
}

func (p pinged) p50() float64 {
	if len(p.rtts) == 0 {
		return 0
	}
	return p.rtts[len(p.rtts)/2]
}

// TestDelayAndJitter: GET /health latency p50 rises by at least 80% of the
// delay, comes back after, and the jitter spreads it.
func TestDelayAndJitter(t *testing.T) {
	const delay, jitter = 200 * time.Millisecond, 50 * time.Millisecond
	n := sized(30, 15)
	before := latencies(t, n)
	var during []time.Duration
	withFault(t, map[string]any{"type": "delay", "delayMs": 200, "jitterMs": 50, "distribution": "normal"}, func() { during = latencies(t, n) })
	after := latencies(t, n)
	t.Logf("GET /health p50 before %v, during %v, after %v; p10..p90 during %v..%v (%d requests each)", q(before, .5), q(during, .5), q(after, .5), q(during, .1), q(during, .9), n)
	require.GreaterOrEqual(t, q(during, .5)-q(before, .5), delay*8/10, "p50 rises by at least 80%% of the delay")
	require.Less(t, q(after, .5)-q(before, .5), delay/4, "and comes back after")
	require.GreaterOrEqual(t, q(during, .9)-q(during, .1), jitter/2, "the jitter spreads the latencies")
}

// TestLoss: about 30% of the ping replies are lost, none after. Both sizes
// keep 60 pings during the fault (12-48% lost is 3 standard deviations
// of a 30% loss over 60); the CI size sends them twice as fast.
func TestLoss(t *testing.T) {
	iv := sized(0.2, 0.1)
	before := probe(t, sized(40, 20), iv)
	var during pinged
	withFault(t, map[string]any{"type": "loss", "percent": 30}, func() { during = probe(t, 60, iv) })
	after := probe(t, sized(40, 20), iv)
	t.Logf("ping received before %d/%d, during %d/%d, after %d/%d", before.received, before.sent, during.received, during.sent, after.received, after.sent)
	require.GreaterOrEqual(t, during.sent, 50, "the pings were sent")
	lost := 1 - float64(during.received)/float64(during.sent)
	require.InDelta(t, 0.30, lost, 0.18, "about 30%% of the replies are lost")
	require.GreaterOrEqual(t, after.received, after.sent-1, "none after")
}

// TestDuplicate: about half of the replies come twice, none after.
func TestDuplicate(t *testing.T) {
	iv := sized(0.2, 0.1)
	var during pinged
	withFault(t, map[string]any{"type": "duplicate", "percent": 50}, func() { during = probe(t, 40, iv) })
	after := probe(t, sized(30, 20), iv)
	t.Logf("ping duplicates during %d of %d, after %d of %d", during.dups, during.sent, after.dups, after.sent)
	require.GreaterOrEqual(t, during.sent, 30, "the pings were sent")
	require.GreaterOrEqual(t, during.dups, 8, "about half of the replies come twice")
	require.GreaterOrEqual(t, after.received, after.sent-1, "replies come after")
	require.Zero(t, after.dups)
}

// TestCorrupt: a corrupted reply is dropped (bad checksum) or flagged.
func TestCorrupt(t *testing.T) {
	iv := sized(0.2, 0.1)
	var during pinged
	withFault(t, map[string]any{"type": "corrupt", "percent": 50}, func() { during = probe(t, 40, iv) })
	after := probe(t, sized(30, 20), iv)
	damaged := during.sent - during.received + during.bad
	t.Logf("ping during: %d sent, %d received, %d bad; after %d/%d", during.sent, during.received, during.bad, after.received, after.sent)
	require.GreaterOrEqual(t, during.sent, 30, "the pings were sent")
	require.GreaterOrEqual(t, damaged, during.sent/5, "a corrupted reply is dropped or flagged")
	require.GreaterOrEqual(t, after.received, after.sent-1)
}

// TestRate: each 1400-byte reply waits its time on the wire and a burst's
// throughput is held to the rate.
func TestRate(t *testing.T) {
	// A 1428-byte reply takes 44.6 ms on the wire at 256 kbit/s; a burst of
	// replies queues behind the rate.
	const serial = 1428 * 8 * 1000 / 256_000.0
	n, iv := sized(20, 10), sized(0.3, 0.2)
	before := probe(t, n, iv, "-s", "1400")
	burstBefore := ping(t, "-s", "1400", "-c", "300", "-i", "0.01", "-w", "4")
	var during, burst pinged
	withFault(t, map[string]any{"type": "rate", "rate": "256kbit"}, func() {
		during = probe(t, n, iv, "-s", "1400")
		burst = ping(t, "-s", "1400", "-c", "300", "-i", "0.01", "-w", "4")
	})
	after := probe(t, n, iv, "-s", "1400")
	kbps := func(p pinged) float64 { return float64(p.received) * 1428 * 8 / 4 / 1000 }
	t.Logf("1400-byte ping p50 before %.1f ms, during %.1f ms, after %.1f ms; burst throughput before %.0f kbit/s, during %.0f kbit/s",
		before.p50(), during.p50(), after.p50(), kbps(burstBefore), kbps(burst))
	require.NotEmpty(t, during.rtts, "replies come during the rate")
	require.GreaterOrEqual(t, during.p50()-before.p50(), 0.8*serial, "each reply waits its time on the wire")
	require.Less(t, kbps(burst), 256*1.2, "throughput is held to the rate")
	require.Less(t, kbps(burst), kbps(burstBefore)*0.6, "and is lower than without it")
	require.Less(t, after.p50()-before.p50(), serial/2, "and comes back after")
}
