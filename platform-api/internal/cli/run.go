package cli

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/experiments"
)

func (r *runner) run(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	watch := fs.Bool("watch", false, "follow the experiment to its verdict (exit 0 passed, 1 failed, 2 aborted)")
	pos, ok := r.flags(fs, args, 1, 1, "PRESET [--watch]")
	if !ok {
		return ExitError
	}
	var e experiments.Experiment
	if err := r.c.do(ctx, http.MethodPost, "/api/experiments", map[string]string{"preset": pos[0]}, &e); err != nil {
		return r.fail(err)
	}
	return r.started(ctx, e, *watch)
}

func (r *runner) rerun(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("rerun", flag.ContinueOnError)
	watch := fs.Bool("watch", false, "follow the experiment to its verdict")
	pos, ok := r.flags(fs, args, 1, 1, "ID [--watch]")
	if !ok {
		return ExitError
	}
	var e experiments.Experiment
	if err := r.c.do(ctx, http.MethodPost, "/api/experiments/"+url.PathEscape(pos[0])+"/rerun", nil, &e); err != nil {
		return r.fail(err)
	}
	return r.started(ctx, e, *watch)
}

func (r *runner) started(ctx context.Context, e experiments.Experiment, watch bool) int {
	fmt.Fprintf(r.out, "experiment %s (%s) started\n", e.ID, e.Name)
	if !watch {
		fmt.Fprintf(r.out, "follow it: dsplab report %s, or GET %s/api/experiments/%s\n", e.ID, r.c.base, e.ID)
		return ExitOK
	}
	return r.watch(ctx, e.ID)
}

// watch polls the experiment until it ends, with a progress line, then
// prints the verdict table. Ctrl-C stops watching, not the experiment.
func (r *runner) watch(ctx context.Context, id string) int {
	last, lastAt := "", time.Time{}
	errors := 0
	for {
		var e experiments.Experiment
		err := r.c.do(ctx, http.MethodGet, "/api/experiments/"+url.PathEscape(id), nil, &e)
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(r.out, "\nstopped watching; the experiment goes on (dsplab report %s)\n", id)
			return ExitError
		case err != nil:
			// A platform restarting for a moment is no verdict: a few
			// misses are waited out, then it is an error.
			if errors++; errors >= 5 {
				return r.fail(err)
			}
		default:
			errors = 0
			if e.State != experiments.StateRunning {
				if r.env.TTY {
					fmt.Fprint(r.out, "\r\033[K")
				}
				return r.verdict(e)
			}
			line, key := progress(e, time.Now())
			switch {
			case r.env.TTY:
				fmt.Fprintf(r.out, "\r\033[K%s", line)
			case key != last || time.Since(lastAt) >= 15*time.Second:
				// A log: a line when the phase, the faults or the checks
				// change, else one every 15 s.
				fmt.Fprintln(r.out, line)
				last, lastAt = key, time.Now()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(r.env.Poll):
		}
	}
}

// progress is the live line: phase, elapsed/expected (the recovery window
// at most), faults active, checks passing and failing (judged on their
// last sample); key is the line without the time.
func progress(e experiments.Experiment, now time.Time) (line, key string) {
	d := e.Definition
	elapsed := now.Sub(e.StartedAt).Seconds()
	load := 0.0 // faults, or without faults the traffic, then recovery
	for _, f := range d.Faults {
		load = max(load, f.AtSeconds+f.DurationSeconds)
	}
	if len(d.Faults) == 0 && d.Traffic != nil {
		load = d.Traffic.DurationSeconds
	}
	expected := load + d.RecoverySeconds
	active := 0
	for _, f := range d.Faults {
		if elapsed >= f.AtSeconds && elapsed < f.AtSeconds+f.DurationSeconds {
			active++
		}
	}
	phase := "before"
	for _, ev := range e.Timeline {
		switch ev.Kind {
		case "traffic-started":
			phase = "traffic"
		case "fault-started":
			phase = "during"
		case "faults-ended":
			phase = "recovery"
		}
	}
	pass, fail := 0, 0
	for _, c := range e.Checks {
		if c.Phase == "after" && len(c.Samples) > 0 {
			phase = "recovery" // also without faults, after the traffic
		}
		if n := len(c.Samples); n > 0 {
			if c.Samples[n-1].Holds {
				pass++
			} else {
				fail++
			}
		}
	}
	key = fmt.Sprintf("%-8s faults active %d  checks %d passing %d failing", phase, active, pass, fail)
	return fmt.Sprintf("%s %s  %-8s %3.0fs/%.0fs  faults active %d  checks %d passing %d failing", e.ID, e.Name, phase, elapsed, expected, active, pass, fail), key
}

// verdict prints the verdict table and returns the exit code.
func (r *runner) verdict(e experiments.Experiment) int {
	fmt.Fprintf(r.out, "%s %s: %s %s\n", e.ID, e.Name, strings.ToUpper(string(e.State)), e.Reason)
	rows := [][]string{{"PHASE", "CHECK", "RESULT", "LAST VALUE", "EXPECTED"}}
	for _, c := range e.Checks {
		res := "passed"
		if !c.Passed {
			res = "FAILED"
			if c.Error != "" {
				res += " (" + c.Error + ")"
			}
		}
		last := "-"
		if n := len(c.Samples); n > 0 && c.Samples[n-1].Value != nil {
			last = fmt.Sprintf("%g", *c.Samples[n-1].Value)
		}
		rows = append(rows, []string{string(c.Phase), c.Name, res, last, fmt.Sprintf("%s %g (%s)", c.Comparator, c.Threshold, c.Mode)})
	}
	r.table(rows)
	l := e.Ledger
	ttd := optSecs(e.TimeToDetectSeconds)
	if e.DetectedBy != "" {
		ttd += " (" + e.DetectedBy + ")"
	}
	fmt.Fprintf(r.out, "time to detect %s, time to recover %s\n", ttd, optSecs(e.TimeToRecoverSeconds))
	fmt.Fprintf(r.out, "ledger: accepted %s, processed %s, duplicates %s, lost %s\n", optNum(l.Accepted), optNum(l.Processed), optNum(l.Duplicates), optNum(l.Lost))
	fmt.Fprintf(r.out, "report: %s/api/experiments/%s/report.html (dsplab report %s --open)\n", r.c.base, e.ID, e.ID)
	switch e.State {
	case experiments.Passed:
		return ExitOK
	case experiments.Failed:
		return ExitFailed
	}
	return ExitError
}

func optNum(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f", *v)
}

func (r *runner) report(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	out := fs.String("o", "", "the file to write (default dsplab-report-ID.html)")
	open := fs.Bool("open", false, "open it in a browser (xdg-open)")
	pos, ok := r.flags(fs, args, 1, 1, "ID [-o FILE] [--open]")
	if !ok {
		return ExitError
	}
	page, err := r.c.raw(ctx, http.MethodGet, "/api/experiments/"+url.PathEscape(pos[0])+"/report.html", nil)
	if err != nil {
		return r.fail(err)
	}
	return r.write(page, orDefault(*out, "dsplab-report-"+pos[0]+".html"), *open)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (r *runner) write(page []byte, path string, open bool) int {
	if err := os.WriteFile(path, page, 0o644); err != nil {
		return r.fail(err)
	}
	fmt.Fprintf(r.out, "wrote %s\n", path)
	if open {
		if err := r.env.Open(path); err != nil {
			return r.fail(err)
		}
	}
	return ExitOK
}

// openInBrowser opens path with xdg-open (or open on macOS) if present.
func openInBrowser(path string) error {
	for _, name := range []string{"xdg-open", "open"} {
		if bin, err := exec.LookPath(name); err == nil {
			return exec.Command(bin, path).Start()
		}
	}
	return fmt.Errorf("no xdg-open here: open %s in a browser", path)
}

func (r *runner) compare(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	html := fs.Bool("html", false, "write the HTML page")
	out := fs.String("o", "", "the file to write (default dsplab-compare-A-B.html; implies --html)")
	open := fs.Bool("open", false, "write the HTML page and open it (xdg-open)")
	pos, ok := r.flags(fs, args, 2, 2, "A B [--html] [-o FILE] [--open]")
	if !ok {
		return ExitError
	}
	q := "?a=" + url.QueryEscape(pos[0]) + "&b=" + url.QueryEscape(pos[1])
	if *html || *out != "" || *open {
		page, err := r.c.raw(ctx, http.MethodGet, "/api/experiments/compare.html"+q, nil)
		if err != nil {
			return r.fail(err)
		}
		return r.write(page, orDefault(*out, "dsplab-compare-"+pos[0]+"-"+pos[1]+".html"), *open)
	}
	var c experiments.Comparison
	if err := r.c.do(ctx, http.MethodGet, "/api/experiments/compare"+q, nil, &c); err != nil {
		return r.fail(err)
	}
	same := "different presets"
	if c.SamePreset {
		same = "same preset"
	}
	fmt.Fprintf(r.out, "a %s (%s) vs b %s (%s): %s\n", c.A.ID, c.A.Name, c.B.ID, c.B.Name, same)
	r.table([][]string{{"", "A", "B"},
		{"verdict", string(c.A.State), string(c.B.State)},
		{"time to detect", optSecs(c.A.TimeToDetectSeconds), optSecs(c.B.TimeToDetectSeconds)},
		{"time to recover", optSecs(c.A.TimeToRecoverSeconds), optSecs(c.B.TimeToRecoverSeconds)},
		{"accepted", optNum(c.A.Ledger.Accepted), optNum(c.B.Ledger.Accepted)},
		{"lost", optNum(c.A.Ledger.Lost), optNum(c.B.Ledger.Lost)}})
	if len(c.DefinitionDiffs) > 0 {
		fmt.Fprintln(r.out, "definition differences:")
		for _, d := range c.DefinitionDiffs {
			fmt.Fprintln(r.out, "  "+d)
		}
	}
	fmt.Fprintln(r.out, "what changed:")
	for _, d := range c.Deltas {
		fmt.Fprintln(r.out, "  "+d)
	}
	if len(c.Deltas) == 0 {
		fmt.Fprintln(r.out, "  nothing worth a sentence")
	}
	return ExitOK
}
