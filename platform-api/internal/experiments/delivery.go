package experiments

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// DeliverySwitch reads and sets an analyzer's run-time knobs through its
// admin API: the delivery mode (at-most-once, at-least-once,
// effectively-once) and the processing delay in milliseconds per packet.
type DeliverySwitch interface {
	DeliveryMode(ctx context.Context, analyzer string) (string, error)
	SetDeliveryMode(ctx context.Context, analyzer, mode string) error
	ProcessingDelay(ctx context.Context, analyzer string) (float64, error)
	SetProcessingDelay(ctx context.Context, analyzer string, ms float64) error
}

// applyDelivery sets the definition's delivery modes and processing
// delays, each after the value in force is on disk (a platform killed
// after a change still knows what to put back).
func (r *runner) applyDelivery(ctx context.Context) outcome {
	if len(r.def.Delivery) == 0 && len(r.def.ProcessingDelayMs) == 0 {
		return proceed
	}
	if r.delivery == nil {
		return fail("delivery modes: the platform cannot reach the analyzers' admin API")
	}
	for _, id := range slices.Sorted(maps.Keys(r.def.Delivery)) {
		mode := r.def.Delivery[id]
		prev, err := r.delivery.DeliveryMode(ctx, id)
		if err != nil {
			r.event("delivery-failed", "reading %s's delivery mode: %v", id, err)
			return fail("delivery mode of %s not read: %v", id, err)
		}
		if err := r.rec.updateDurable(func(e *Experiment) {
			if e.undo.DeliveryBefore == nil {
				e.undo.DeliveryBefore = map[string]string{}
			}
			e.undo.DeliveryBefore[id] = prev
		}); err != nil {
			r.event("delivery-failed", "saving %s's delivery mode before changing it: %v", id, err)
			return fail("delivery mode not changed: the mode to put back could not be saved: %v", err)
		}
		if err := r.delivery.SetDeliveryMode(ctx, id, mode); err != nil {
			r.event("delivery-failed", "%s to %s: %v", id, mode, err)
			return fail("delivery mode of %s not set to %s: %v", id, mode, err)
		}
		r.event("delivery-changed", "%s: %s (was %s)", id, mode, prev)
	}
	for _, id := range slices.Sorted(maps.Keys(r.def.ProcessingDelayMs)) {
		ms := r.def.ProcessingDelayMs[id]
		prev, err := r.delivery.ProcessingDelay(ctx, id)
		if err != nil {
			r.event("processing-failed", "reading %s's processing delay: %v", id, err)
			return fail("processing delay of %s not read: %v", id, err)
		}
		if err := r.rec.updateDurable(func(e *Experiment) {
			if e.undo.DelayBefore == nil {
				e.undo.DelayBefore = map[string]float64{}
			}
			e.undo.DelayBefore[id] = prev
		}); err != nil {
			r.event("processing-failed", "saving %s's processing delay before changing it: %v", id, err)
			return fail("processing delay not changed: the delay to put back could not be saved: %v", err)
		}
		if err := r.delivery.SetProcessingDelay(ctx, id, ms); err != nil {
			r.event("processing-failed", "%s to %g ms: %v", id, ms, err)
			return fail("processing delay of %s not set to %g ms: %v", id, ms, err)
		}
		r.event("processing-changed", "%s: %g ms per packet (was %g ms)", id, ms, prev)
	}
	return proceed
}

// restoreDelays puts back the processing delays from before the
// experiment; it says what it could not put back.
func (r *runner) restoreDelays(ctx context.Context, before map[string]float64) []string {
	var failed []string
	for _, id := range slices.Sorted(maps.Keys(before)) {
		if err := retrying(ctx, func() error { return r.delivery.SetProcessingDelay(ctx, id, before[id]) }); err != nil {
			r.event("processing-failed", "putting %s's processing delay back to %g ms: %v", id, before[id], err)
			failed = append(failed, fmt.Sprintf("%s NOT back to %g ms: %v", id, before[id], err))
			continue
		}
		r.event("processing-restored", "%s: %g ms per packet again", id, before[id])
	}
	if len(failed) == 0 {
		r.rec.updateDurable(func(e *Experiment) { e.undo.DelayRestored = true })
	}
	return failed
}

// concludeDelays is restoreDelays for an interrupted experiment.
func (r *runner) concludeDelays(ctx context.Context, u undo, rep *undone) {
	if len(u.DelayBefore) == 0 || u.DelayRestored || r.delivery == nil {
		return
	}
	if failed := r.restoreDelays(ctx, u.DelayBefore); len(failed) > 0 {
		rep.notDone("processing delays: " + strings.Join(failed, ", "))
		return
	}
	rep.done("the analyzers' processing delays from before restored")
}

// restoreDelivery puts back the modes from before the experiment; it says
// what it could not put back.
func (r *runner) restoreDelivery(ctx context.Context, before map[string]string) []string {
	var failed []string
	for _, id := range slices.Sorted(maps.Keys(before)) {
		if err := r.setModeRetrying(ctx, id, before[id]); err != nil {
			r.event("delivery-failed", "putting %s's delivery mode back to %s: %v", id, before[id], err)
			failed = append(failed, fmt.Sprintf("%s NOT back to %s: %v", id, before[id], err))
			continue
		}
		r.event("delivery-restored", "%s: %s again", id, before[id])
	}
	if len(failed) == 0 {
		r.rec.updateDurable(func(e *Experiment) { e.undo.DeliveryRestored = true })
	}
	return failed
}

// concludeDelivery is restoreDelivery for an interrupted experiment.
func (r *runner) concludeDelivery(ctx context.Context, u undo, rep *undone) {
	if len(u.DeliveryBefore) == 0 || u.DeliveryRestored || r.delivery == nil {
		return
	}
	if failed := r.restoreDelivery(ctx, u.DeliveryBefore); len(failed) > 0 {
		rep.notDone("delivery modes: " + strings.Join(failed, ", "))
		return
	}
	rep.done("the analyzers' delivery modes from before restored")
}

// setModeRetrying sets a mode, retrying for about 30 s: at the end of an
// experiment that killed the analyzer, it may be starting again.
func (r *runner) setModeRetrying(ctx context.Context, id, mode string) error {
	return retrying(ctx, func() error { return r.delivery.SetDeliveryMode(ctx, id, mode) })
}

// retrying calls set until it succeeds, for about 30 s (six tries 2, 4,
// ... 10 s apart) or until ctx ends.
func retrying(ctx context.Context, set func() error) error {
	var err error
	for attempt := range 6 {
		if err = set(); err == nil || !sleep(ctx, time.Duration(attempt+1)*2*time.Second) {
			return err
		}
	}
	return err
}

// deliveryDrift says which analyzers are no longer in the mode, or at the
// processing delay, the experiment set (one that restarted without keeping
// what it was set to at run time: the experiment did not test what it
// says).
func (r *runner) deliveryDrift(ctx context.Context) string {
	var drift []string
	for _, id := range slices.Sorted(maps.Keys(r.def.ProcessingDelayMs)) {
		got, err := r.delivery.ProcessingDelay(ctx, id)
		if want := r.def.ProcessingDelayMs[id]; err == nil && got != want {
			r.event("processing-drifted", "%s spends %g ms per packet, not %g: it did not keep the delay set at run time across its restart", id, got, want)
			drift = append(drift, fmt.Sprintf("%s ended at %g ms per packet, not %g", id, got, want))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(r.def.Delivery)) {
		got, err := r.delivery.DeliveryMode(ctx, id)
		if err == nil && got != r.def.Delivery[id] {
			r.event("delivery-drifted", "%s is %s, not %s: it did not keep the mode set at run time across its restart", id, got, r.def.Delivery[id])
			drift = append(drift, fmt.Sprintf("%s ended in %s, not %s", id, got, r.def.Delivery[id]))
		}
	}
	if len(drift) == 0 {
		return ""
	}
	return "delivery settings did not hold: " + strings.Join(drift, ", ")
}
