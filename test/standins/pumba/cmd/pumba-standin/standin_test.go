package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/urfave/cli"
)

// fakeEngine plays the engine of the comparison: two running containers,
// dsplab-pmb-target and dsplab-pmb-target2, labelled dsplab-pmb=1. It
// records the sidecar commands. (The sidecar itself is tested against the
// real engine by the platform's faults tests, which run this stand-in.)
type fakeEngine struct {
	mu       sync.Mutex
	sidecars []string
	// fail, when set, answers each sidecar command (nil: it succeeds), as
	// a real tool's exit code would.
	fail func(tool string, args []string) error
}

var fakeContainers = []struct {
	target
	labels map[string]string
}{
	{target{"2a5058816053", "dsplab-pmb-target"}, map[string]string{"dsplab-pmb": "1"}},
	{target{"d56a2f6887dc", "dsplab-pmb-target2"}, map[string]string{"dsplab-pmb": "1"}},
}

func (f *fakeEngine) List(_ context.Context, names []string, pattern string, labels []string, limit int) ([]target, error) {
	re, reErr := regexp.Compile(pattern)
	var out []target
	for _, c := range fakeContainers {
		ok := true
		for _, l := range labels {
			k, v, hasV := strings.Cut(l, "=")
			got, has := c.labels[k]
			ok = ok && has && (!hasV || got == v)
		}
		if len(names) > 0 {
			ok = ok && (slices.Contains(names, c.Name) || slices.Contains(names, c.ID))
		} else {
			ok = ok && reErr == nil && re.MatchString(c.Name)
		}
		if ok {
			out = append(out, c.target)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (f *fakeEngine) Sidecar(_ context.Context, t target, image string, pull bool, tool string, argsList [][]string, _ io.Writer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range argsList {
		f.sidecars = append(f.sidecars, "["+t.Name+"] "+image+": "+tool+" "+strings.Join(a, " "))
		if f.fail != nil {
			if err := f.fail(tool, a); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fakeEngine) Close() error { return nil }

// run runs argv as the stand-in's main would and returns its exit code
// and output. ctx is cancelled: every hold ends at once, and an --interval
// run returns after its first round (as Pumba does on SIGTERM).
func run(t *testing.T, eng *fakeEngine, argv []string) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out bytes.Buffer
	code := -1
	cli.OsExiter = func(c int) { code = c }
	cli.ErrWriter = &out
	t.Cleanup(func() { cli.OsExiter, cli.ErrWriter = func(c int) { panic(c) }, io.Discard })
	err := newApp(ctx, func() (runtime, error) { return eng, nil }, &out).Run(append([]string{"pumba"}, argv...))
	switch {
	case code != -1: // urfave/cli's own exit (3: unknown command)
	case err != nil:
		code = 1
	default:
		code = 0
	}
	return code, out.String(), err
}

func TestTheStandInAcceptsAndRejectsEveryArgvAsRealPumba117Did(t *testing.T) {
	for _, row := range argvTable {
		t.Run(strings.Join(row.argv, " "), func(t *testing.T) {
			code, out, err := run(t, &fakeEngine{}, row.argv)
			want := row.code
			if want == 124 {
				want = 0 // repeated until a signal, then a clean end
			}
			require.Equal(t, want, code, "output: %s err: %v", out, err)
			switch {
			case row.code == 1:
				require.EqualError(t, err, row.message)
			case row.code == 3:
				require.Contains(t, out, row.message)
			case row.message != "":
				require.Contains(t, out, row.message)
			}
		})
	}
}

func TestThePlatformsDelayIsTheTcCommandRealPumbaRan(t *testing.T) {
	// Real Pumba 1.1.7 logged command="[delay 100ms 10ms 20.00 distribution
	// normal]" and ran "tc qdisc add dev eth0 root netem delay 100ms 10ms
	// 20.00 distribution normal" in one sidecar, then "tc qdisc del dev
	// eth0 root netem" in another (README.md, rows N2 and N6).
	eng := &fakeEngine{}
	_, out, err := run(t, eng, []string{"--log-level", "info", "netem", "--duration", "2s", "--tc-image", "img", "--pull-image=false",
		"delay", "--time", "100", "--jitter", "10", "--correlation", "20", "--distribution", "normal", "dsplab-pmb-target"})
	require.NoError(t, err, out)
	require.Equal(t, []string{
		"[dsplab-pmb-target] img: tc qdisc add dev eth0 root netem delay 100ms 10ms 20.00 distribution normal",
		"[dsplab-pmb-target] img: tc qdisc del dev eth0 root netem",
	}, eng.sidecars)

	// Without jitter Pumba drops it and sends the correlation where tc
	// reads a jitter: the platform refuses such a delay.
	eng = &fakeEngine{}
	_, out, err = run(t, eng, []string{"netem", "--duration", "2s", "delay", "--time", "100", "--jitter", "0", "--correlation", "20", "dsplab-pmb-target"})
	require.NoError(t, err, out)
	require.Contains(t, eng.sidecars, "[dsplab-pmb-target] "+defaultNettools+": tc qdisc add dev eth0 root netem delay 100ms 20.00")

	// A dry run execs nothing.
	eng = &fakeEngine{}
	_, out, err = run(t, eng, []string{"--dry-run", "netem", "--duration", "2s", "rate", "--rate", "1mbit", "dsplab-pmb-target"})
	require.NoError(t, err, out)
	require.Empty(t, eng.sidecars)
	require.Contains(t, out, "tc qdisc add dev eth0 root netem rate 1mbit\n")
}

func TestAKernelWithoutNetemFailsTheCommandAsRealPumbaDid(t *testing.T) {
	// Real Pumba 1.1.7 on this kernel (README.md, row N2): exit 1, the tc
	// command and its exit code; tc's own words ("Specified qdisc kind is
	// unknown") are drained, not reported; nothing is deleted.
	eng := &fakeEngine{fail: func(tool string, args []string) error {
		return errors.New(tool + " " + strings.Join(args, " ") + " failed with exit code 2")
	}}
	code, out, err := run(t, eng, []string{"netem", "--duration", "2s", "--tc-image", "img", "loss", "--percent", "30", "dsplab-pmb-target"})
	require.Equal(t, 1, code, out)
	require.EqualError(t, err, "running loss: error running chaos command: failed to add packet loss for one or more containers: netem failed: tc qdisc add dev eth0 root netem loss 30.00 failed with exit code 2")
	require.Equal(t, []string{"[dsplab-pmb-target] img: tc qdisc add dev eth0 root netem loss 30.00"}, eng.sidecars)
}

func TestAFailedNetemDeletionIsOnlyAWarningAsInPumba(t *testing.T) {
	eng := &fakeEngine{fail: func(_ string, args []string) error {
		if args[1] == "del" {
			return errors.New("tc " + strings.Join(args, " ") + " failed with exit code 2")
		}
		return nil
	}}
	code, out, err := run(t, eng, []string{"netem", "--duration", "2s", "--tc-image", "img", "corrupt", "--percent", "5", "dsplab-pmb-target"})
	require.Equal(t, 0, code, out)
	require.NoError(t, err)
	require.Contains(t, out, `level=warning msg="failed to stop netem container (container may have been removed)"`)
}

func TestThePlatformsPartitionIsTheRulesRealPumbaAdded(t *testing.T) {
	eng := &fakeEngine{}
	_, out, err := run(t, eng, []string{"--log-level", "info", "iptables", "--duration", "3s", "--iptables-image", "nettools", "--pull-image=false",
		"--source", "172.17.0.3/32", "--source", "172.17.0.2/32", "loss", "--probability", "1.0", "dsplab-pmb-target", "dsplab-pmb-target2"})
	require.NoError(t, err, out)
	rule := func(op, name, src string) string {
		return "[" + name + "] nettools: iptables " + op + " INPUT -i eth0 -s " + src + " -m statistic --mode random --probability 1.00 -j DROP"
	}
	var want []string
	for _, op := range []string{"-I", "-D"} {
		for _, name := range []string{"dsplab-pmb-target", "dsplab-pmb-target2"} {
			want = append(want, rule(op, name, "172.17.0.3/32"), rule(op, name, "172.17.0.2/32"))
		}
	}
	require.ElementsMatch(t, want, eng.sidecars)
}
