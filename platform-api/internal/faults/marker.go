package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dsplab/dsplab/platform-api/internal/docker"
)

// markerKind is the dsplab.job.kind of fault markers.
const markerKind = "fault"

// Label keys of a fault marker.
const (
	labelType      = "dsplab.job.type"
	labelTarget    = "dsplab.job.target"
	labelContainer = "dsplab.job.container"
	labelTargetID  = "dsplab.job.target_id"
	labelStarted   = "dsplab.job.started_at"
	labelExpires   = "dsplab.job.expires_at"
	labelSpec      = "dsplab.job.spec"
	labelRevert    = "dsplab.job.revert"
	labelPeer      = "dsplab.job.peer"
	labelPeerID    = "dsplab.job.peer_id"
	labelSources   = "dsplab.job.sources"
)

// listTimeout bounds the Docker listings of Reconcile, and the removal of
// a marker whose fault was not applied.
const listTimeout = 10 * time.Second

// mark records f in a marker container, before it is applied: if the
// platform dies in between, reconciliation reverts a fault that may or may
// not have been applied, which is harmless.
func (m *Manager) mark(ctx context.Context, f *Fault) error {
	id, err := m.rt.CreateMarker(ctx, "dsplab-fault-"+f.ID, f.image, markerLabels(f))
	if err != nil {
		return err
	}
	f.marker = id
	return nil
}

// save reads the limits a resource fault puts back (before its marker,
// which records them).
func (m *Manager) save(ctx context.Context, f *Fault) error {
	cur, err := m.rt.Resources(ctx, f.ContainerID)
	if err != nil {
		return err
	}
	f.saved = cur
	return nil
}

// markerLabels record f on its marker container: what a restarted
// platform needs to revert or re-arm it.
func markerLabels(f *Fault) map[string]string {
	spec, _ := json.Marshal(f.spec)
	saved, _ := json.Marshal(f.saved)
	return map[string]string{
		docker.LabelJobID: f.ID, docker.LabelJobKind: markerKind,
		labelType: string(f.Type), labelTarget: f.Target, labelContainer: f.Container, labelTargetID: f.ContainerID,
		labelPeer: f.Peer, labelPeerID: f.PeerID,
		labelStarted: f.StartedAt.Format(time.RFC3339Nano), labelExpires: f.EndsAt.Format(time.RFC3339Nano),
		labelSpec: string(spec), labelRevert: string(saved), labelSources: strings.Join(f.sources, ","),
	}
}

// fromMarker reads a fault back from its marker's labels.
func fromMarker(mk docker.Container) (*Fault, error) {
	l := mk.Labels
	var s Spec
	if err := json.Unmarshal([]byte(l[labelSpec]), &s); err != nil {
		return nil, fmt.Errorf("spec label: %w", err)
	}
	fam, ok := families[Type(l[labelType])]
	if !ok {
		return nil, fmt.Errorf("type label: no fault type %q", l[labelType])
	}
	f := &Fault{ID: l[docker.LabelJobID], Type: Type(l[labelType]), Target: l[labelTarget], Container: l[labelContainer],
		ContainerID: l[labelTargetID], Peer: l[labelPeer], PeerID: l[labelPeerID], State: StateActive, marker: mk.ID, spec: s, fam: fam}
	if l[labelSources] != "" {
		f.sources = strings.Split(l[labelSources], ",")
	}
	if err := json.Unmarshal([]byte(l[labelRevert]), &f.saved); err != nil {
		return nil, fmt.Errorf("revert label: %w", err)
	}
	started, err1 := time.Parse(time.RFC3339Nano, l[labelStarted])
	ends, err2 := time.Parse(time.RFC3339Nano, l[labelExpires])
	if err := errors.Join(err1, err2); err != nil || f.ID == "" || f.ContainerID == "" {
		return nil, fmt.Errorf("incomplete labels: %v", err)
	}
	f.StartedAt, f.EndsAt = started, &ends
	f.Params = fam.params(s)
	if _, ok := fam.(network); ok {
		f.Command = "pumba (job container " + mk.Name + ")"
	} else {
		f.Command = fam.command(nil, f)
	}
	return f, nil
}

// Reconcile runs at start-up: every fault marker left by an earlier run
// is reverted if its time is up, or taken over and re-armed if not. It is
// bounded by listTimeout for the listing and revertT per container fault;
// a revert that fails is retried in the background (revert.go). An
// expired network fault is handed to a background cleanup (Pumba stopped,
// its leftover rules removed by sidecars, with retries) and shows cleanup
// "pending" meanwhile: a sidecar that hangs must not keep the platform
// from serving. Close cancels and waits for both.
func (m *Manager) Reconcile(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	markers, err := m.rt.Jobs(lctx, markerKind)
	if err != nil {
		return err
	}
	pumbas, err := m.rt.Jobs(lctx, netemKind)
	if err != nil {
		return err
	}
	markers = append(markers, pumbas...)
	sort.Slice(markers, func(i, j int) bool { return markers[i].Labels[labelStarted] < markers[j].Labels[labelStarted] })
	var errs []error
	for _, mk := range markers {
		if err := m.reconcile(ctx, mk); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reconcile takes over, reverts or cleans up the fault of one marker.
func (m *Manager) reconcile(ctx context.Context, mk docker.Container) error {
	f, err := fromMarker(mk)
	if err != nil {
		m.log.Warn("unreadable fault marker; removing it", "marker", mk.Name, "err", err)
		rctx, cancel := context.WithTimeout(ctx, listTimeout)
		defer cancel()
		return m.rt.Remove(rctx, mk.ID)
	}
	_, network := f.fam.(network)
	left := time.Until(*f.EndsAt)
	running := left > 0 && (!network || mk.State == "running")
	expired := !running && network
	m.mu.Lock()
	if _, known := m.faults[f.ID]; known || m.closed {
		m.mu.Unlock()
		return nil
	}
	m.faults[f.ID] = f
	m.order = append(m.order, f.ID)
	if running {
		m.track(f)
	}
	if expired {
		f.State, f.Cleanup = StateReverting, "pending"
		m.wg.Add(1)
		go m.reconcileNetwork(f)
	}
	m.mu.Unlock()
	switch {
	case running:
		m.log.Info("fault taken over after restart", "id", f.ID, "type", f.Type, "target", f.Container, "left", left.Round(time.Second))
		return nil
	case expired:
		m.log.Info("expired network fault found after restart; cleaning up in the background", "id", f.ID, "type", f.Type, "target", f.Container)
		return nil
	}
	m.log.Info("expired fault found after restart; reverting", "id", f.ID, "type", f.Type, "target", f.Container)
	return m.revert(f, "expired while the platform was down")
}
