// Package devstack runs the dev stack from real binaries as separate
// processes (devkafka, analyzers, distributor) on free loopback ports, for
// integration tests and benchmarks. Every process can be killed, stopped,
// signalled and restarted alone, as a user of `make dev` would.
package devstack

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries are the paths of the built programs.
type Binaries struct{ Distributor, Analyzer, Devkafka string }

// Build compiles the three programs into dir.
func Build(dir string) (Binaries, error) {
	root, err := moduleRoot()
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Distributor: filepath.Join(dir, "distributor"), Analyzer: filepath.Join(dir, "analyzer"), Devkafka: filepath.Join(dir, "devkafka")}
	for out, pkg := range map[string]string{b.Distributor: "./distributor/cmd/distributor", b.Analyzer: "./services/analyzer/cmd/analyzer", b.Devkafka: "./tools/devkafka/cmd/devkafka"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("go build %s: %v\n%s", pkg, err, o)
		}
	}
	return b, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// FreePort returns a loopback port nothing listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Proc is one program of the stack.
type Proc struct {
	Name string
	Port int
	path string
	args []string
	env  []string
	logs *syncBuffer
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// URL is the program's base URL on loopback.
func (p *Proc) URL() string { return "http://127.0.0.1:" + strconv.Itoa(p.Port) }

// Start runs the program (again).
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

// Signal sends sig to the running program.
func (p *Proc) Signal(sig os.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return fmt.Errorf("%s is not running", p.Name)
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() { p.end(syscall.SIGKILL, 5*time.Second) }

// Stop sends SIGTERM and waits up to 15 s, then kills.
func (p *Proc) Stop() { p.end(syscall.SIGTERM, 15*time.Second) }

func (p *Proc) end(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}

// Pid is the running process's id (0 when not running).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Logs returns what the program wrote so far.
func (p *Proc) Logs() string { return p.logs.String() }

// Options shape a Stack.
type Options struct {
	// Weights of analyzer-1..N (default 0.5, 0.3, 0.2).
	Weights []float64
	// DistributorConfig is YAML written to a file passed with -config.file.
	DistributorConfig string
	DistributorEnv    []string
	AnalyzerEnv       []string
	// AnalyzerBins, where set, runs analyzer-i+1 from AnalyzerBins[i]
	// instead of the built one (a benchmark's A/B of two analyzer builds).
	AnalyzerBins []string
}

// Stack is a running dev stack.
type Stack struct {
	Kafka       *Proc
	KafkaAddr   string
	Analyzers   []*Proc
	Distributor *Proc
	ConfigPath  string
}

// Start builds nothing: it runs bins as a stack on free ports and waits
// until the distributor sees every analyzer healthy. Everything is stopped
// in t.Cleanup, and logs are printed if the test failed.
func Start(t testing.TB, bins Binaries, o Options) *Stack {
	t.Helper()
	if len(o.Weights) == 0 {
		o.Weights = []float64{0.5, 0.3, 0.2}
	}
	s := &Stack{}
	kport := FreePort(t)
	s.KafkaAddr = "127.0.0.1:" + strconv.Itoa(kport)
	s.Kafka = &Proc{Name: "devkafka", Port: kport, path: bins.Devkafka, args: []string{"-addr", s.KafkaAddr}, logs: &syncBuffer{}}
	var analyzers []string
	for i := range o.Weights {
		id := fmt.Sprintf("analyzer-%d", i+1)
		path := bins.Analyzer
		if i < len(o.AnalyzerBins) && o.AnalyzerBins[i] != "" {
			path = o.AnalyzerBins[i]
		}
		p := &Proc{Name: id, Port: FreePort(t), path: path, logs: &syncBuffer{},
			env: append([]string{"ANALYZER_ID=" + id, "KAFKA_BROKERS=" + s.KafkaAddr, "LOG_LEVEL=warn"}, o.AnalyzerEnv...)}
		p.env = append(p.env, "PORT="+strconv.Itoa(p.Port))
		s.Analyzers = append(s.Analyzers, p)
		analyzers = append(analyzers, fmt.Sprintf("%s@%s=%g", id, p.URL(), o.Weights[i]))
	}
	d := &Proc{Name: "distributor", Port: FreePort(t), path: bins.Distributor, logs: &syncBuffer{}}
	d.env = append([]string{"KAFKA_BROKERS=" + s.KafkaAddr, "ANALYZERS=" + strings.Join(analyzers, ","), "PORT=" + strconv.Itoa(d.Port), "LOG_LEVEL=warn"}, o.DistributorEnv...)
	if o.DistributorConfig != "" {
		s.ConfigPath = filepath.Join(t.TempDir(), "distributor.yaml")
		if err := os.WriteFile(s.ConfigPath, []byte(o.DistributorConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		d.args = []string{"-config.file", s.ConfigPath}
	}
	s.Distributor = d
	t.Cleanup(func() {
		for _, p := range s.all() {
			p.Stop()
		}
		if t.Failed() {
			for _, p := range s.all() {
				t.Logf("--- %s logs:\n%s", p.Name, tail(p.Logs(), 4000))
			}
		}
	})
	for _, p := range s.all() {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		if p == s.Kafka {
			WaitTCP(t, s.KafkaAddr, 10*time.Second)
		}
	}
	s.WaitHealthy(t, len(o.Weights), 30*time.Second)
	return s
}

// AddDistributor runs a second distributor from the program at path, with
// the first one's environment and arguments on a port of its own, beside
// it on the same broker and analyzers (a benchmark's A/B of two builds).
// It is stopped in t.Cleanup.
// env is added to (and wins over) the first one's.
func (s *Stack) AddDistributor(t testing.TB, path string, env ...string) *Proc {
	t.Helper()
	port := FreePort(t)
	d := &Proc{Name: "distributor-" + strconv.Itoa(port), Port: port, path: path, args: s.Distributor.args, logs: &syncBuffer{}}
	d.env = append(append(append([]string{}, s.Distributor.env...), "PORT="+strconv.Itoa(d.Port)), env...) // the last of a name wins
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	WaitTCP(t, "127.0.0.1:"+strconv.Itoa(d.Port), 30*time.Second)
	return d
}

func (s *Stack) all() []*Proc {
	return append(append([]*Proc{s.Kafka}, s.Analyzers...), s.Distributor)
}

// WaitHealthy polls the distributor's /health until n analyzers are
// healthy.
func (s *Stack) WaitHealthy(t testing.TB, n int, within time.Duration) {
	t.Helper()
	want := fmt.Sprintf(`"healthy_analyzers":%d,`, n)
	Eventually(t, within, func() bool {
		resp, err := http.Get(s.Distributor.URL() + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return strings.Contains(b.String(), want)
	}, "distributor never saw %d healthy analyzers", n)
}

// WaitTCP waits until addr accepts connections.
func WaitTCP(t testing.TB, addr string, within time.Duration) {
	t.Helper()
	Eventually(t, within, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "nothing listens on %s", addr)
}

// Eventually polls cond every 50ms until it holds or within passes.
func Eventually(t testing.TB, within time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("after %s: "+msg, append([]any{within}, args...)...)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
