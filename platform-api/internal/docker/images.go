package docker

// Job images (k6, Pumba, Pumba's nettools) are not compose services, so
// nothing else pulls them: the platform ensures them itself. Invariant:
// at most one pull per image is in flight; every caller that needs the
// image while it is pulling waits for that pull (bounded by the wait), and
// an image the engine already has is never pulled (ImageInspect first).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// ErrImageUnavailable marks an *ImageError: a job image that could not be
// made present (the API answers 503).
var ErrImageUnavailable = errors.New("image not available")

// ImageError says which image is missing and why.
type ImageError struct {
	Image string
	// Pulling is true when the wait ended while the pull goes on: a retry
	// later may succeed.
	Pulling bool
	Err     error
}

func (e *ImageError) Error() string {
	return fmt.Sprintf("image %s is not available: %v", e.Image, e.Err)
}

func (e *ImageError) Unwrap() []error { return []error{ErrImageUnavailable, e.Err} }

// ImageOptions tune how job images are ensured.
type ImageOptions struct {
	// Wait bounds how long a job waits for its image (default 5 min).
	Wait time.Duration
	// PullTimeout bounds one pull (default 30 min): a pull outlives the
	// request that started it, since later jobs wait for the same pull.
	PullTimeout time.Duration
	Logger      *slog.Logger
}

// images is the per-image state of the job images, and the pulls in
// flight. Pulls run under the runtime's own context: a request that gives
// up does not abort a pull other jobs wait for; Close cancels them.
type images struct {
	c      *client.Client
	opts   ImageOptions
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	state   map[string]string  // image -> "present", "pulling 34% (...)", "failed: cause"
	flights map[string]*flight // image -> the check/pull in flight
}

// flight is one check-and-pull of an image; done closes when err is set.
type flight struct {
	done chan struct{}
	err  error
}

func newImages(c *client.Client) *images {
	ctx, cancel := context.WithCancel(context.Background())
	im := &images{c: c, ctx: ctx, cancel: cancel, state: map[string]string{}, flights: map[string]*flight{}}
	im.configure(ImageOptions{})
	return im
}

func (im *images) configure(o ImageOptions) {
	if o.Wait <= 0 {
		o.Wait = 5 * time.Minute
	}
	if o.PullTimeout <= 0 {
		o.PullTimeout = 30 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	im.mu.Lock()
	im.opts = o
	im.mu.Unlock()
}

// ConfigureImages sets how job images are ensured; call it before any
// job starts.
func (r *Runtime) ConfigureImages(o ImageOptions) { r.images.configure(o) }

// PrefetchImages checks each image in the background and pulls those the
// engine lacks (at start-up: the first job then finds its image present).
func (r *Runtime) PrefetchImages(refs ...string) {
	for _, ref := range refs {
		if ref != "" {
			r.images.start(ref)
		}
	}
}

// EnsureImages returns once every image is on the engine: present, or
// pulled now, or pulled by a pull already in flight. Otherwise it returns
// an *ImageError naming the image and the cause.
func (r *Runtime) EnsureImages(ctx context.Context, refs ...string) error {
	// Every pull starts now, not after the one before.
	flights := make(map[string]*flight, len(refs))
	for _, ref := range refs {
		if ref != "" {
			flights[ref] = r.images.start(ref)
		}
	}
	for _, ref := range refs {
		if f := flights[ref]; f != nil {
			if err := r.images.wait(ctx, ref, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// ImageStates reports each job image the platform knows of: "present",
// "checking", "pulling N% (...)" or "failed: cause".
func (r *Runtime) ImageStates() map[string]string {
	im := r.images
	im.mu.Lock()
	defer im.mu.Unlock()
	out := make(map[string]string, len(im.state))
	for k, v := range im.state {
		out[k] = v
	}
	return out
}

// wait waits for f, the flight of ref, for at most the configured wait.
func (im *images) wait(ctx context.Context, ref string, f *flight) error {
	im.mu.Lock()
	wait := im.opts.Wait
	im.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return &ImageError{Image: ref, Pulling: true, Err: fmt.Errorf("gave up waiting for the pull (%s): %w", im.stateOf(ref), ctx.Err())}
	case <-t.C:
		return &ImageError{Image: ref, Pulling: true, Err: fmt.Errorf("still pulling after %s (%s); try again later", wait, im.stateOf(ref))}
	}
}

func (im *images) stateOf(ref string) string {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.state[ref]
}

func (im *images) setState(ref, s string) {
	im.mu.Lock()
	im.state[ref] = s
	im.mu.Unlock()
}

// start returns the flight of ref, starting one unless one is in flight.
func (im *images) start(ref string) *flight {
	im.mu.Lock()
	defer im.mu.Unlock()
	if f := im.flights[ref]; f != nil {
		return f
	}
	f := &flight{done: make(chan struct{})}
	im.flights[ref] = f
	if _, known := im.state[ref]; !known {
		im.state[ref] = "checking"
	}
	ctx, cancel := context.WithTimeout(im.ctx, im.opts.PullTimeout)
	log := im.opts.Logger
	im.wg.Add(1)
	go func() {
		defer im.wg.Done()
		defer cancel()
		err := im.check(ctx, ref, log)
		im.mu.Lock()
		f.err = err
		delete(im.flights, ref)
		im.mu.Unlock()
		close(f.done)
	}()
	return f
}

// check inspects ref and pulls it when the engine lacks it.
func (im *images) check(ctx context.Context, ref string, log *slog.Logger) error {
	_, err := im.c.ImageInspect(ctx, ref)
	if err == nil {
		im.setState(ref, "present")
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		im.setState(ref, "failed: inspect: "+err.Error())
		return &ImageError{Image: ref, Err: fmt.Errorf("inspect: %w", err)}
	}
	log.Info("job image pull started", "image", ref)
	started := time.Now()
	p, err := im.pull(ctx, ref, log)
	if err != nil {
		im.setState(ref, "failed: pull: "+err.Error())
		log.Error("job image pull failed", "image", ref, "err", err, "layers", p.layers(), "bytes", p.current())
		return &ImageError{Image: ref, Err: fmt.Errorf("pull: %w", err)}
	}
	im.setState(ref, "present")
	log.Info("job image pulled", "image", ref, "layers", p.layers(), "bytes", p.total(), "took", time.Since(started).Round(time.Millisecond).String())
	return nil
}

// pull pulls ref through the SDK, decoding the engine's progress stream
// into the image's state and, at most every few seconds and at each
// finished layer, a log line.
func (im *images) pull(ctx context.Context, ref string, log *slog.Logger) (*pullProgress, error) {
	p := newPullProgress()
	im.setState(ref, "pulling 0%")
	res, err := im.c.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return p, err
	}
	defer res.Close()
	var logged time.Time
	for m, err := range res.JSONMessages(ctx) {
		if err != nil {
			return p, err
		}
		if m.Error != nil {
			return p, errors.New(m.Error.Message)
		}
		layerDone := p.add(m)
		im.setState(ref, "pulling "+p.String())
		if layerDone || time.Since(logged) > 3*time.Second {
			logged = time.Now()
			log.Info("pulling job image", "image", ref, "progress", p.String(), "layers_done", p.done(), "layers", p.layers(),
				"bytes", p.current(), "bytes_total", p.total())
		}
	}
	if err := ctx.Err(); err != nil {
		return p, err
	}
	p.complete = true
	return p, nil
}

// closeImages cancels the pulls in flight and waits for them.
func (im *images) close() {
	im.cancel()
	im.wg.Wait()
}
