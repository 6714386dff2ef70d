package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/dsplab/dsplab/internal/httpguard"
	"github.com/dsplab/dsplab/internal/ledger"
	"github.com/dsplab/dsplab/services/analyzer/internal/consume"
)

// adminRoutes are the routes that change the analyzer: GET and PUT
// /admin/delivery and /admin/processing. They are guarded as the distributor's admin routes are
// (package httpguard): a Host naming the analyzer (its id, the compose
// service name, localhost or an IP, or one of ALLOWED_HOSTS), no
// cross-origin browser writes, Content-Type: application/json on writes,
// and with ADMIN_TOKEN set its bearer token.
func (a *App) adminRoutes(r chi.Router, cfg Config) {
	r.Use(httpguard.NewHosts("ALLOWED_HOSTS", cfg.AllowedHosts, cfg.Consumer.ID, "analyzer").Check, httpguard.SameOrigin,
		httpguard.Bearer(cfg.AdminToken, "analyzer", "ADMIN_TOKEN"), httpguard.JSONOnly())
	r.Get("/admin/delivery", a.getDelivery)
	r.Put("/admin/delivery", a.putDelivery)
	r.Get("/admin/processing", a.getProcessing)
	r.Put("/admin/processing", a.putProcessing)
}

// maxDelayMs bounds the processing delay: 10 s per packet.
const maxDelayMs = 10000

// processingState is GET and PUT /admin/processing: the delay spent on
// every packet, the "slow analyzer" knob (PROCESSING_DELAY_MS at start).
type processingState struct {
	DelayMs float64 `json:"delay_ms"`
}

func (a *App) getProcessing(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, processingState{DelayMs: float64(a.consumer.ProcessingDelay()) / float64(time.Millisecond)})
}

// putProcessing sets the processing delay from the next packet on:
// {"delay_ms": 10}. Kept in PROCESSING_STATE_FILE first, when set, so a
// restarted process keeps it (as a delivery mode is kept).
func (a *App) putProcessing(w http.ResponseWriter, r *http.Request) {
	var body struct {
		DelayMs *float64 `json:"delay_ms"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "body must be {\"delay_ms\": 0 to 10000}: " + err.Error()})
		return
	}
	if body.DelayMs == nil || *body.DelayMs < 0 || *body.DelayMs > maxDelayMs {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "delay_ms: must be a number of milliseconds from 0 to 10000"})
		return
	}
	d := time.Duration(*body.DelayMs * float64(time.Millisecond))
	if a.delayFile != "" {
		if err := saveText(a.delayFile, ".processing-*", strconv.FormatFloat(*body.DelayMs, 'f', -1, 64)); err != nil {
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: fmt.Sprintf("the delay stays %v: cannot keep it for a restart: %v (PROCESSING_STATE_FILE must be writable by the analyzer)", a.consumer.ProcessingDelay(), err)})
			return
		}
	}
	a.consumer.SetProcessingDelay(d)
	writeJSON(w, http.StatusOK, processingState{DelayMs: *body.DelayMs})
}

type deliveryState struct {
	Mode        ledger.Mode   `json:"mode"`
	Modes       []ledger.Mode `json:"modes"`
	LedgerTopic string        `json:"ledger_topic"`
}

func (a *App) getDelivery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, deliveryState{Mode: a.consumer.Mode(), Modes: ledger.Modes, LedgerTopic: a.ledgerTopic})
}

// putDelivery switches the delivery mode: {"mode":"at-most-once"}. It
// answers when the switch is done (effectively-once: after its processed
// set is rebuilt from the ledger).
func (a *App) putDelivery(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Mode string `json:"mode"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "body must be {\"mode\": \"at-most-once|at-least-once|effectively-once\"}: " + err.Error()})
		return
	}
	mode, err := ledger.ParseMode(strings.TrimSpace(body.Mode))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		return
	}
	// The switch waits for the batch in hand and, for effectively-once,
	// reads the ledger: bounded, and not cut short by a client that leaves
	// (a half-done switch keeps the old mode anyway).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 60*time.Second)
	defer cancel()
	sw, err := a.consumer.SetMode(ctx, mode)
	switch {
	case errors.Is(err, consume.ErrNoLedger):
		writeJSON(w, http.StatusConflict, errorBody{Error: err.Error()})
	case errors.Is(err, consume.ErrModeNotKept):
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "the mode stays " + string(a.consumer.Mode()) + ": " + err.Error() +
			" (DELIVERY_STATE_FILE must be writable by the analyzer)"})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "the mode stays " + string(a.consumer.Mode()) + ": " + err.Error()})
	default:
		writeJSON(w, http.StatusOK, sw)
	}
}

type errorBody struct {
	Error string `json:"error"`
}

// loadMode applies the mode kept in the state file, if there is one: a
// mode switched at run time survives a restart of the process (a killed
// container started again keeps its file), not a new container.
func loadMode(cfg *Config, log *slog.Logger) error {
	text, ok, err := readState(cfg.StateFile, "DELIVERY_STATE_FILE")
	if !ok {
		return err
	}
	mode, err := ledger.ParseMode(text)
	if err != nil {
		return fmt.Errorf("DELIVERY_STATE_FILE %s: %w", cfg.StateFile, err)
	}
	if mode == ledger.EffectivelyOnce && cfg.Consumer.LedgerTopic == "" {
		return fmt.Errorf("DELIVERY_STATE_FILE %s: %w", cfg.StateFile, consume.ErrNoLedger)
	}
	if mode != cfg.Consumer.Delivery {
		log.Info("delivery mode from the state file (switched at run time) instead of DELIVERY", "mode", mode, "DELIVERY", cfg.Consumer.Delivery, "file", cfg.StateFile)
	}
	cfg.Consumer.Delivery = mode
	return nil
}

// readState is the trimmed text of the state file at path (named by its
// variable in errors); ok is false when there is none to apply: no path,
// no file, or an error.
func readState(path, variable string) (text string, ok bool, err error) {
	if path == "" {
		return "", false, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", variable, err)
	}
	return strings.TrimSpace(string(b)), true, nil
}

// saveMode writes the state file atomically.
func saveMode(path string, m ledger.Mode) error { return saveText(path, ".delivery-*", string(m)) }

// saveText writes a state file atomically: a temporary file (pattern) in
// its directory, renamed.
func saveText(path, pattern, text string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), pattern)
	if err != nil {
		return err
	}
	_, err = tmp.WriteString(text + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// loadDelay applies the processing delay kept in PROCESSING_STATE_FILE, if
// there is one, instead of PROCESSING_DELAY_MS: a delay set at run time
// survives a restart of the process (a killed container started again
// keeps its file), not a new container.
func loadDelay(cfg *Config, log *slog.Logger) error {
	text, ok, err := readState(cfg.ProcessingStateFile, "PROCESSING_STATE_FILE")
	if !ok {
		return err
	}
	ms, err := strconv.ParseFloat(text, 64)
	if err != nil || ms < 0 || ms > maxDelayMs {
		return fmt.Errorf("PROCESSING_STATE_FILE %s: %q is not a delay from 0 to %d ms", cfg.ProcessingStateFile, text, maxDelayMs)
	}
	d := time.Duration(ms * float64(time.Millisecond))
	if d != cfg.Consumer.ProcessingDelay {
		log.Info("processing delay from the state file (set at run time) instead of PROCESSING_DELAY_MS", "delay", d, "PROCESSING_DELAY_MS", cfg.Consumer.ProcessingDelay, "file", cfg.ProcessingStateFile)
	}
	cfg.Consumer.ProcessingDelay = d
	return nil
}
