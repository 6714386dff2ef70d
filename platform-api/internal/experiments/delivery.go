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

// knob is one of the analyzers' run-time settings that an experiment
// changes through their admin API and puts back: the delivery mode or the
// processing delay. Both go the same way: the value in force is read and
// kept on disk before the change, put back at the end (or by the next
// platform after a kill of this one), and read again before the verdict.
type knob[V comparable] struct {
	kind   string // the timeline's <kind>-changed, -restored, -failed, -drifted
	what   string // "delivery mode", in messages
	plural string // "delivery modes"
	at     string // "ended in at-least-once", "ended at 10 ms per packet"
	show   func(V) string
	get    func(ctx context.Context, id string) (V, error)
	set    func(ctx context.Context, id string, v V) error
	// before and restored are the knob's fields of the undo record.
	before   func(u *undo) *map[string]V
	restored func(u *undo) *bool
}

// toRestore are the values from before the experiment in u that are not
// back yet.
func (k knob[V]) toRestore(u undo) map[string]V {
	if *k.restored(&u) {
		return nil
	}
	return *k.before(&u)
}

func (r *runner) modeKnob() knob[string] {
	return knob[string]{kind: "delivery", what: "delivery mode", plural: "delivery modes", at: "in",
		show:   func(m string) string { return m },
		get:    func(ctx context.Context, id string) (string, error) { return r.delivery.DeliveryMode(ctx, id) },
		set:    func(ctx context.Context, id, m string) error { return r.delivery.SetDeliveryMode(ctx, id, m) },
		before: func(u *undo) *map[string]string { return &u.DeliveryBefore }, restored: func(u *undo) *bool { return &u.DeliveryRestored }}
}

func (r *runner) delayKnob() knob[float64] {
	return knob[float64]{kind: "processing", what: "processing delay", plural: "processing delays", at: "at",
		show: func(ms float64) string { return fmt.Sprintf("%g ms per packet", ms) },
		get:  func(ctx context.Context, id string) (float64, error) { return r.delivery.ProcessingDelay(ctx, id) },
		set: func(ctx context.Context, id string, ms float64) error {
			return r.delivery.SetProcessingDelay(ctx, id, ms)
		},
		before: func(u *undo) *map[string]float64 { return &u.DelayBefore }, restored: func(u *undo) *bool { return &u.DelayRestored }}
}

// applyDelivery sets the definition's delivery modes, then its processing
// delays, before the before checks.
func (r *runner) applyDelivery(ctx context.Context) outcome {
	if len(r.def.Delivery) == 0 && len(r.def.ProcessingDelayMs) == 0 {
		return proceed
	}
	if r.delivery == nil {
		return fail("delivery modes: the platform cannot reach the analyzers' admin API")
	}
	if o := apply(ctx, r, r.modeKnob(), r.def.Delivery); o.decided() {
		return o
	}
	return apply(ctx, r, r.delayKnob(), r.def.ProcessingDelayMs)
}

// apply sets k to want on each analyzer, each after the value in force is
// on disk (a platform killed after a change still knows what to put back).
func apply[V comparable](ctx context.Context, r *runner, k knob[V], want map[string]V) outcome {
	for _, id := range slices.Sorted(maps.Keys(want)) {
		prev, err := k.get(ctx, id)
		if err != nil {
			r.event(k.kind+"-failed", "reading %s's %s: %v", id, k.what, err)
			return fail("%s of %s not read: %v", k.what, id, err)
		}
		if err := r.rec.updateDurable(func(e *Experiment) {
			if b := k.before(&e.undo); *b == nil {
				*b = map[string]V{}
			}
			(*k.before(&e.undo))[id] = prev
		}); err != nil {
			r.event(k.kind+"-failed", "saving %s's %s before changing it: %v", id, k.what, err)
			return fail("%s not changed: the value to put back could not be saved: %v", k.what, err)
		}
		if err := k.set(ctx, id, want[id]); err != nil {
			r.event(k.kind+"-failed", "%s to %s: %v", id, k.show(want[id]), err)
			return fail("%s of %s not set to %s: %v", k.what, id, k.show(want[id]), err)
		}
		r.event(k.kind+"-changed", "%s: %s (was %s)", id, k.show(want[id]), k.show(prev))
	}
	return proceed
}

// restoreDelivery puts back the delivery modes and processing delays from
// before the experiment that are not back yet, as its undo record says;
// it says what it could not put back.
func (r *runner) restoreDelivery(ctx context.Context, u undo) []string {
	return append(restore(ctx, r, r.modeKnob(), u), restore(ctx, r, r.delayKnob(), u)...)
}

// restore puts back k's values from before the experiment, each retried
// for about 30 s (at the end of an experiment that killed the analyzer, it
// may be starting again); it says what it could not put back, after the
// knob's name.
func restore[V comparable](ctx context.Context, r *runner, k knob[V], u undo) []string {
	before := k.toRestore(u)
	if len(before) == 0 || r.delivery == nil {
		return nil
	}
	var failed []string
	for _, id := range slices.Sorted(maps.Keys(before)) {
		if err := retrying(ctx, func() error { return k.set(ctx, id, before[id]) }); err != nil {
			r.event(k.kind+"-failed", "putting %s's %s back to %s: %v", id, k.what, k.show(before[id]), err)
			failed = append(failed, fmt.Sprintf("%s NOT back to %s: %v", id, k.show(before[id]), err))
			continue
		}
		r.event(k.kind+"-restored", "%s: %s again", id, k.show(before[id]))
	}
	if len(failed) > 0 {
		return []string{k.plural + ": " + strings.Join(failed, ", ")}
	}
	r.rec.updateDurable(func(e *Experiment) { *k.restored(&e.undo) = true })
	return nil
}

// concludeDelivery is restoreDelivery for an interrupted experiment.
func (r *runner) concludeDelivery(ctx context.Context, u undo, rep *undone) {
	conclude(ctx, r, r.modeKnob(), u, rep)
	conclude(ctx, r, r.delayKnob(), u, rep)
}

func conclude[V comparable](ctx context.Context, r *runner, k knob[V], u undo, rep *undone) {
	if len(k.toRestore(u)) == 0 || r.delivery == nil {
		return
	}
	if failed := restore(ctx, r, k, u); len(failed) > 0 {
		rep.notDone(failed[0])
		return
	}
	rep.done("the analyzers' " + k.plural + " from before restored")
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
	drift := append(drifted(ctx, r, r.modeKnob(), r.def.Delivery), drifted(ctx, r, r.delayKnob(), r.def.ProcessingDelayMs)...)
	if len(drift) == 0 {
		return ""
	}
	return "delivery settings did not hold: " + strings.Join(drift, ", ")
}

func drifted[V comparable](ctx context.Context, r *runner, k knob[V], want map[string]V) []string {
	var drift []string
	for _, id := range slices.Sorted(maps.Keys(want)) {
		got, err := k.get(ctx, id)
		if err == nil && got != want[id] {
			r.event(k.kind+"-drifted", "%s is %s %s, not %s: it did not keep the %s set at run time across its restart", id, k.at, k.show(got), k.show(want[id]), k.what)
			drift = append(drift, fmt.Sprintf("%s ended %s %s, not %s", id, k.at, k.show(got), k.show(want[id])))
		}
	}
	return drift
}
