package browsertest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Recorder keeps what a page did that a test asserts on: the console's
// errors and warnings, uncaught exceptions and error log entries
// (Problems), and every request the browser sent (Requests).
type Recorder struct {
	mu       sync.Mutex
	problems []string
	requests []string
}

// Problems are the console errors and warnings (their arguments as JSON),
// exceptions and error log entries recorded so far.
func (r *Recorder) Problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.problems...)
}

// Requests are the URLs requested since the last ResetRequests.
func (r *Recorder) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

// ResetRequests forgets the requests recorded so far (before a page).
func (r *Recorder) ResetRequests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

// record is the listener of the browser's events.
func (r *Recorder) record(ev any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
			b, _ := json.Marshal(e.Args)
			r.problems = append(r.problems, string(e.Type)+": "+string(b))
		}
	case *runtime.EventExceptionThrown:
		r.problems = append(r.problems, e.ExceptionDetails.Text)
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError {
			r.problems = append(r.problems, e.Entry.Text)
		}
	case *network.EventRequestWillBeSent:
		r.requests = append(r.requests, e.Request.URL)
	}
}

// Open starts a headless Chromium (1100×900) for the test, with its
// network events on and a Recorder listening; the browser is closed in
// t.Cleanup. The first call starts the browser, so ctx has no timeout:
// give each navigation its own.
func Open(t testing.TB) (context.Context, *Recorder) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(Chromium(t)), chromedp.NoSandbox, chromedp.Headless, chromedp.WindowSize(1100, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{})
		return err
	}))
	if err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	rec := &Recorder{}
	if err := chromedp.Listen(ctx, rec.record); err != nil {
		t.Fatalf("listen to Chromium: %v", err)
	}
	return ctx, rec
}
