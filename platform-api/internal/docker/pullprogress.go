package docker

// The engine reports a pull as a JSON stream: per layer id, "Pulling fs
// layer", "Waiting", "Downloading" (progressDetail current/total bytes),
// "Verifying Checksum", "Download complete", "Extracting", then "Pull
// complete"; or "Already exists" for a layer the engine has. pullProgress
// folds that stream into counts; the share is of bytes to download when
// their sizes are known, else of layers.

import (
	"fmt"
	"strings"

	"github.com/moby/moby/api/types/jsonstream"
)

type layerProgress struct {
	current, total int64
	done           bool
}

type pullProgress struct {
	// complete is set when the stream ended without error: until then the
	// engine may still announce layers, so the share stays below 100%.
	complete bool
	order    []string
	byID     map[string]*layerProgress
}

func newPullProgress() *pullProgress { return &pullProgress{byID: map[string]*layerProgress{}} }

// add folds one message in; it reports whether a layer just finished.
func (p *pullProgress) add(m jsonstream.Message) bool {
	if m.ID == "" || strings.HasPrefix(m.Status, "Pulling from") {
		return false // image-level lines: "Pulling from ...", "Digest: ...", "Status: ..."
	}
	l := p.byID[m.ID]
	if l == nil {
		l = &layerProgress{}
		p.byID[m.ID] = l
		p.order = append(p.order, m.ID)
	}
	switch {
	case m.Status == "Downloading" && m.Progress != nil:
		l.current, l.total = m.Progress.Current, max(l.total, m.Progress.Total)
	case m.Status == "Download complete" || m.Status == "Verifying Checksum" || m.Status == "Extracting":
		l.current = l.total
	case m.Status == "Pull complete" || m.Status == "Already exists":
		l.current = l.total
		if !l.done {
			l.done = true
			return true
		}
	}
	return false
}

func (p *pullProgress) layers() int { return len(p.order) }

func (p *pullProgress) done() int {
	n := 0
	for _, l := range p.byID {
		if l.done {
			n++
		}
	}
	return n
}

func (p *pullProgress) current() int64 {
	var n int64
	for _, l := range p.byID {
		n += l.current
	}
	return n
}

func (p *pullProgress) total() int64 {
	var n int64
	for _, l := range p.byID {
		n += l.total
	}
	return n
}

// percent is the share pulled, 0 to 100; 100 only once the pull is
// complete (downloaded bytes alone leave the extraction to do).
func (p *pullProgress) percent() int {
	if len(p.order) == 0 {
		return 0
	}
	var share float64
	if t := p.total(); t > 0 {
		share = float64(p.current()) / float64(t)
	} else {
		share = float64(p.done()) / float64(len(p.order))
	}
	pct := int(share * 100)
	if !p.complete {
		pct = min(pct, 99)
	}
	return pct
}

// String is e.g. "34% (2/5 layers, 12.3 of 36.1 MB)".
func (p *pullProgress) String() string {
	if len(p.order) == 0 {
		return "0%"
	}
	s := fmt.Sprintf("%d%% (%d/%d layers", p.percent(), p.done(), len(p.order))
	if t := p.total(); t > 0 {
		s += fmt.Sprintf(", %.1f of %.1f MB", float64(p.current())/1e6, float64(t)/1e6)
	}
	return s + ")"
}
