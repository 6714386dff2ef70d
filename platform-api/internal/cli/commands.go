package cli

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/experiments"
)

func (r *runner) table(rows [][]string) {
	w := tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
	for _, row := range rows {
		fmt.Fprintln(w, strings.Join(row, "\t"))
	}
	w.Flush()
}

func (r *runner) targets(ctx context.Context, args []string) int {
	if _, ok := r.flags(flag.NewFlagSet("targets", flag.ContinueOnError), args, 0, 0, ""); !ok {
		return ExitError
	}
	var out struct {
		Project string `json:"project"`
		Targets []struct {
			Service, Name, State, Health, Role string
		} `json:"targets"`
	}
	if err := r.c.do(ctx, http.MethodGet, "/api/targets", nil, &out); err != nil {
		return r.fail(err)
	}
	rows := [][]string{{"SERVICE", "CONTAINER", "STATE", "HEALTH", "ROLE"}}
	for _, t := range out.Targets {
		rows = append(rows, []string{t.Service, t.Name, t.State, dash(t.Health), t.Role})
	}
	fmt.Fprintf(r.out, "project %s\n", out.Project)
	r.table(rows)
	return ExitOK
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// wholeSeconds reads a duration flag as the API's whole seconds (>= 1).
func wholeSeconds(name string, d time.Duration) (float64, error) {
	if d < time.Second || d%time.Second != 0 {
		return 0, fmt.Errorf("--%s %s: must be whole seconds, at least 1s (e.g. 15s, 2m)", name, d)
	}
	return d.Seconds(), nil
}

type fault struct {
	ID, Type, Target, State, Command, Error string
	StartedAt                               time.Time
	EndsAt                                  *time.Time
}

func (r *runner) fault(ctx context.Context, args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "list":
			return r.faultList(ctx, args[1:])
		case "stop":
			return r.oneID(ctx, "fault stop", args[1:], "/api/faults/%s/stop")
		case "reset":
			return r.oneID(ctx, "fault reset", append([]string{"-"}, args[1:]...), "/api/faults/reset")
		}
	}
	fs := flag.NewFlagSet("fault", flag.ContinueOnError)
	dur := fs.Duration("for", 15*time.Second, "how long (whole seconds)")
	req := map[string]any{}
	str := func(name, key, help string) { fs.Func(name, help, func(v string) error { req[key] = v; return nil }) }
	num := func(name, key, help string) {
		fs.Func(name, help, func(v string) error {
			f, err := strconv.ParseFloat(v, 64)
			req[key] = f
			return err
		})
	}
	str("signal", "signal", "kill: the signal (default SIGKILL)")
	num("cpus", "cpus", "cpu: the limit")
	num("memory-mb", "memoryMB", "memory: the limit")
	num("delay-ms", "delayMs", "delay")
	num("jitter-ms", "jitterMs", "delay: jitter")
	num("percent", "percent", "loss, duplicate, corrupt")
	str("rate", "rate", "rate: e.g. 1mbit")
	str("peer", "peer", "partition: the other side")
	allow := fs.Bool("allow-infra", false, "allow infrastructure targets")
	pos, ok := r.flags(fs, args, 2, 2, "TYPE TARGET [--for 15s] [--signal S] [--cpus N] [--memory-mb N] [--delay-ms N] [--percent N] [--rate R] [--peer P]")
	if !ok {
		return ExitError
	}
	secs, err := wholeSeconds("for", *dur)
	if err != nil {
		return r.fail(err)
	}
	req["type"], req["target"], req["durationSeconds"] = pos[0], pos[1], secs
	if *allow {
		req["allowInfra"] = true
	}
	var f fault
	if err := r.c.do(ctx, http.MethodPost, "/api/faults", req, &f); err != nil {
		return r.fail(err)
	}
	fmt.Fprintf(r.out, "fault %s: %s on %s for %gs, %s\n  %s\n", f.ID, f.Type, f.Target, secs, f.State, f.Command)
	return ExitOK
}

func (r *runner) faultList(ctx context.Context, args []string) int {
	if _, ok := r.flags(flag.NewFlagSet("fault list", flag.ContinueOnError), args, 0, 0, ""); !ok {
		return ExitError
	}
	var out struct{ Faults []fault }
	if err := r.c.do(ctx, http.MethodGet, "/api/faults", nil, &out); err != nil {
		return r.fail(err)
	}
	rows := [][]string{{"ID", "TYPE", "TARGET", "STATE", "STARTED", "COMMAND"}}
	for _, f := range out.Faults {
		rows = append(rows, []string{f.ID, f.Type, f.Target, f.State, f.StartedAt.Local().Format(time.TimeOnly), f.Command})
	}
	r.table(rows)
	return ExitOK
}

// oneID posts to path (with the id, when it has a %s) and prints the state.
func (r *runner) oneID(ctx context.Context, name string, args []string, path string) int {
	pos, ok := r.flags(flag.NewFlagSet(name, flag.ContinueOnError), args, 1, 1, "ID")
	if !ok {
		return ExitError
	}
	if strings.Contains(path, "%s") {
		path = fmt.Sprintf(path, url.PathEscape(pos[0]))
	}
	var out map[string]any
	if err := r.c.do(ctx, http.MethodPost, path, nil, &out); err != nil {
		return r.fail(err)
	}
	if st, ok := out["state"].(string); ok {
		fmt.Fprintf(r.out, "%s: %s\n", pos[0], st)
	} else {
		fmt.Fprintln(r.out, "done")
	}
	return ExitOK
}

type trafficJob struct {
	ID, Script, Profile, TargetURL, State, Command, Error string
	RPS                                                   float64
	DurationSeconds                                       float64
	StartedAt                                             time.Time
}

func (r *runner) traffic(ctx context.Context, args []string) int {
	if len(args) == 0 {
		return r.failf("usage: dsplab traffic start|list|stop")
	}
	switch args[0] {
	case "list":
		var out struct{ Jobs []trafficJob }
		if _, ok := r.flags(flag.NewFlagSet("traffic list", flag.ContinueOnError), args[1:], 0, 0, ""); !ok {
			return ExitError
		}
		if err := r.c.do(ctx, http.MethodGet, "/api/traffic", nil, &out); err != nil {
			return r.fail(err)
		}
		rows := [][]string{{"ID", "SCRIPT", "PROFILE", "RPS", "STATE", "TARGET"}}
		for _, j := range out.Jobs {
			rows = append(rows, []string{j.ID, j.Script, j.Profile, strconv.FormatFloat(j.RPS, 'g', -1, 64), j.State, j.TargetURL})
		}
		r.table(rows)
		return ExitOK
	case "stop":
		return r.oneID(ctx, "traffic stop", args[1:], "/api/traffic/%s/stop")
	case "start":
	default:
		return r.failf("usage: dsplab traffic start|list|stop (not %q)", args[0])
	}
	fs := flag.NewFlagSet("traffic start", flag.ContinueOnError)
	rps := fs.Float64("rps", 300, "packets (requests) per second")
	dur := fs.Duration("for", 2*time.Minute, "how long (whole seconds)")
	target := fs.String("target", "http://distributor:8080", "the service under load, as the stack's network sees it")
	script := fs.String("script", "", "ingest-packets (default), loki-push, service-chain")
	profile := fs.String("profile", "", "constant (default), ramp, spike, burst, stochastic")
	if _, ok := r.flags(fs, args[1:], 0, 0, "[--rps 300] [--for 2m] [--target URL] [--script S] [--profile P]"); !ok {
		return ExitError
	}
	secs, err := wholeSeconds("for", *dur)
	if err != nil {
		return r.fail(err)
	}
	req := map[string]any{"targetUrl": *target, "rps": *rps, "durationSeconds": secs}
	if *script != "" {
		req["script"] = *script
	}
	if *profile != "" {
		req["profile"] = *profile
	}
	var j trafficJob
	if err := r.c.do(ctx, http.MethodPost, "/api/traffic/start", req, &j); err != nil {
		return r.fail(err)
	}
	fmt.Fprintf(r.out, "traffic %s: %s %s %g/s for %gs → %s, %s\n", j.ID, j.Script, j.Profile, j.RPS, secs, j.TargetURL, j.State)
	return ExitOK
}

func (r *runner) presets(ctx context.Context, args []string) int {
	if _, ok := r.flags(flag.NewFlagSet("presets", flag.ContinueOnError), args, 0, 0, ""); !ok {
		return ExitError
	}
	var out struct{ Presets []experiments.Definition }
	if err := r.c.do(ctx, http.MethodGet, "/api/experiments/presets", nil, &out); err != nil {
		return r.fail(err)
	}
	rows := [][]string{{"PRESET", "DESCRIPTION"}}
	for _, p := range out.Presets {
		d := p.Description
		if i := strings.IndexAny(d, ".\n"); i > 0 {
			d = d[:i]
		}
		rows = append(rows, []string{p.Name, d})
	}
	r.table(rows)
	return ExitOK
}

func (r *runner) experiments(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("experiments", flag.ContinueOnError)
	preset := fs.String("preset", "", "only runs of this preset")
	state := fs.String("state", "", "only runs in this state")
	limit := fs.Int("limit", 20, "how many (1 to 100)")
	if _, ok := r.flags(fs, args, 0, 0, "[--preset P] [--state S] [--limit N]"); !ok {
		return ExitError
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *preset != "" {
		q.Set("preset", *preset)
	}
	if *state != "" {
		q.Set("state", *state)
	}
	var out struct {
		Experiments []experiments.Experiment
		Next        string
	}
	if err := r.c.do(ctx, http.MethodGet, "/api/experiments?"+q.Encode(), nil, &out); err != nil {
		return r.fail(err)
	}
	rows := [][]string{{"ID", "PRESET", "STATE", "STARTED", "TTD", "TTR"}}
	for _, e := range out.Experiments {
		rows = append(rows, []string{e.ID, e.Name, string(e.State), e.StartedAt.Local().Format(time.DateTime), optSecs(e.TimeToDetectSeconds), optSecs(e.TimeToRecoverSeconds)})
	}
	r.table(rows)
	if out.Next != "" {
		fmt.Fprintf(r.out, "(more: GET /api/experiments?after=%s)\n", out.Next)
	}
	return ExitOK
}

func optSecs(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1fs", *v)
}
