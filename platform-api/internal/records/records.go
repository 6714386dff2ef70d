// Package records keeps the platform's own state on disk: one JSON file
// per record in a directory (a subdirectory of STATE_DIR, the compose
// volume), each written whole and atomically.
//
// Invariants: a record on disk is either a complete earlier version or a
// complete new one, never a mix (write to a temporary file, fsync it,
// rename it over the old one, fsync the directory: POSIX rename is atomic
// and the fsyncs order the data before the name). A file that is
// nevertheless unreadable — a disk or file system that lost a write, a
// hand edit — is skipped, logged, counted and renamed *.corrupt: it never
// keeps the platform from starting. The store is bounded: at most
// KeepFinal records marked final (the oldest are deleted first), records
// of at most MaxBytes, and at most KeepCorrupt quarantined files.
//
// Why files and not SQLite or bbolt: a record (an experiment and its
// report) is read and written whole, by key, with no query across
// records; one file per record means a damaged record loses only itself
// (a damaged database page or meta page can refuse the whole file), the
// files can be read with cat and jq, and nothing is added to the build.
package records

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options bound a store.
type Options struct {
	// KeepFinal is how many records marked final are kept; beyond it the
	// oldest (by the time of their last write) are deleted. 0: no bound.
	KeepFinal int
	// MaxBytes refuses larger records (default 8 MiB).
	MaxBytes int
	// KeepCorrupt is how many unreadable files are kept, renamed
	// *.corrupt, for someone to look at (default 10; older ones go).
	KeepCorrupt int
	Logger      *slog.Logger
}

// Record is a record read back at Open.
type Record struct {
	Key     string
	Final   bool
	SavedAt time.Time
	Data    json.RawMessage
}

// ErrTooLarge is returned by Put for a record over MaxBytes.
var ErrTooLarge = errors.New("record too large")

// Store is a directory of records. It is safe for concurrent use.
type Store struct {
	dir     string
	o       Options
	log     *slog.Logger
	mu      sync.Mutex
	index   map[string]entry
	loaded  []Record
	skipped atomic.Int64
}

type entry struct {
	final   bool
	savedAt time.Time
}

// envelope is a file's content: the record and a checksum of its data
// (CRC-32C of the data's bytes as they are in the file).
type envelope struct {
	Format  int             `json:"format"`
	Key     string          `json:"key"`
	Final   bool            `json:"final"`
	SavedAt time.Time       `json:"savedAt"`
	CRC32C  uint32          `json:"crc32c"`
	Data    json.RawMessage `json:"data"`
}

const (
	format    = 1
	suffix    = ".json"
	corrupt   = ".corrupt"
	tmpPrefix = ".tmp-"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// keyRE keeps keys usable as file names on every system.
var keyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Open creates dir if needed, checks that it is writable, removes the
// temporary files of writes a crash cut short, reads every record (see
// Each), quarantines the unreadable ones and applies the bounds. Only a
// directory that cannot be used is an error.
func Open(dir string, o Options) (*Store, error) {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 8 << 20
	}
	if o.KeepCorrupt <= 0 {
		o.KeepCorrupt = 10
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{dir: dir, o: o, log: o.Logger.With("state_dir", dir), index: map[string]entry{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := s.probe(); err != nil {
		return nil, fmt.Errorf("state directory %s is not writable: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	var quarantined []string
	for _, de := range entries {
		name := de.Name()
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			// A write that never reached its rename: the record's
			// previous version, if any, is intact under its own name.
			os.Remove(filepath.Join(dir, name))
		case strings.HasSuffix(name, corrupt):
			quarantined = append(quarantined, name)
		case strings.HasSuffix(name, suffix) && de.Type().IsRegular():
			r, err := s.read(name)
			if err != nil {
				quarantined = append(quarantined, s.quarantine(name, err))
				continue
			}
			s.loaded = append(s.loaded, r)
			s.index[r.Key] = entry{final: r.Final, savedAt: r.SavedAt}
		}
	}
	sort.SliceStable(s.loaded, func(i, j int) bool { return s.loaded[i].SavedAt.Before(s.loaded[j].SavedAt) })
	s.mu.Lock()
	s.prune()
	s.mu.Unlock()
	s.trimQuarantine(quarantined)
	return s, nil
}

// probe writes and removes a file, so a read-only or foreign-owned volume
// is reported at start, not at the first experiment.
func (s *Store) probe() error {
	f, err := os.CreateTemp(s.dir, tmpPrefix+"probe-")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// read parses and checks one file.
func (s *Store) read(name string) (Record, error) {
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return Record{}, err
	}
	defer f.Close()
	// The envelope adds a few hundred bytes; the data escapes nothing more
	// than Put wrote.
	b, err := io.ReadAll(io.LimitReader(f, int64(s.o.MaxBytes)+4096))
	if err != nil {
		return Record{}, err
	}
	if len(b) > s.o.MaxBytes+4095 {
		return Record{}, fmt.Errorf("over %d bytes", s.o.MaxBytes)
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Record{}, fmt.Errorf("not a record (%d bytes): %w", len(b), err)
	}
	switch want := strings.TrimSuffix(name, suffix); {
	case env.Format != format:
		return Record{}, fmt.Errorf("format %d, want %d", env.Format, format)
	case env.Key != want:
		return Record{}, fmt.Errorf("key %q in a file named for %q", env.Key, want)
	case len(env.Data) == 0:
		return Record{}, errors.New("no data")
	case crc32.Checksum(env.Data, castagnoli) != env.CRC32C:
		return Record{}, errors.New("checksum mismatch")
	}
	return Record{Key: env.Key, Final: env.Final, SavedAt: env.SavedAt, Data: env.Data}, nil
}

// quarantine renames an unreadable file *.corrupt, logs and counts it,
// and returns its new name.
func (s *Store) quarantine(name string, why error) string {
	s.skipped.Add(1)
	to := name + corrupt
	if err := os.Rename(filepath.Join(s.dir, name), filepath.Join(s.dir, to)); err != nil {
		s.log.Error("unreadable record skipped; could not set it aside", "file", name, "err", why, "rename_err", err)
		return to
	}
	s.log.Warn("unreadable record skipped and set aside", "file", name, "kept_as", to, "err", why)
	return to
}

// trimQuarantine keeps the newest KeepCorrupt quarantined files.
func (s *Store) trimQuarantine(names []string) {
	if len(names) <= s.o.KeepCorrupt {
		return
	}
	mod := map[string]time.Time{}
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(s.dir, n)); err == nil {
			mod[n] = fi.ModTime()
		}
	}
	sort.Slice(names, func(i, j int) bool { return mod[names[i]].Before(mod[names[j]]) })
	for _, n := range names[:len(names)-s.o.KeepCorrupt] {
		os.Remove(filepath.Join(s.dir, n))
	}
}

// Each calls fn with every record read at Open, oldest first, once: the
// store then forgets them. A record fn refuses (returns an error, e.g. it
// cannot decode it) is quarantined, logged and counted like an unreadable
// file.
func (s *Store) Each(fn func(key string, data []byte) error) {
	s.mu.Lock()
	loaded := s.loaded
	s.loaded = nil
	s.mu.Unlock()
	for _, r := range loaded {
		if err := fn(r.Key, r.Data); err != nil {
			s.mu.Lock()
			delete(s.index, r.Key)
			s.quarantine(r.Key+suffix, err)
			s.mu.Unlock()
		}
	}
}

// Skipped counts the unreadable records skipped since Open.
func (s *Store) Skipped() int64 { return s.skipped.Load() }

// Put writes v (as JSON) under key, replacing what was there, and
// returns once it is on disk. A final record counts against KeepFinal:
// the oldest final records beyond it are deleted.
func (s *Store) Put(key string, final bool, v any) error {
	if !keyRE.MatchString(key) {
		return fmt.Errorf("record key %q: letters, digits, '.', '_' and '-' only, at most 128", key)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("record %s: %w", key, err)
	}
	if len(data) > s.o.MaxBytes {
		return fmt.Errorf("record %s: %w: %d bytes, the limit is %d", key, ErrTooLarge, len(data), s.o.MaxBytes)
	}
	now := time.Now().UTC()
	b, err := json.Marshal(envelope{Format: format, Key: key, Final: final, SavedAt: now, CRC32C: crc32.Checksum(data, castagnoli), Data: data})
	if err != nil {
		return fmt.Errorf("record %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write(key+suffix, b); err != nil {
		return fmt.Errorf("record %s: %w", key, err)
	}
	s.index[key] = entry{final: final, savedAt: now}
	if final {
		s.prune()
	}
	return nil
}

// write replaces name with b atomically and durably (s.mu held).
func (s *Store) write(name string, b []byte) error {
	rb := make([]byte, 4)
	rand.Read(rb)
	tmp := filepath.Join(s.dir, tmpPrefix+name+"-"+hex.EncodeToString(rb))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// Two halves, so a test can stop a writer between them (a torn write).
	_, err = f.Write(b[:len(b)/2])
	if err == nil {
		testHook("half-written")
		_, err = f.Write(b[len(b)/2:])
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	testHook("renamed")
	return s.syncDir()
}

// testHook is called at points of a write where a crash is interesting;
// the writer process of the tests blocks there to be killed.
var testHook = func(stage string) {}

// syncDir makes the directory's entries (a rename, a removal) durable.
func (s *Store) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Delete removes a record (no error if there is none).
func (s *Store) Delete(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.index, key)
	if err := os.Remove(filepath.Join(s.dir, key+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return s.syncDir()
}

// Len is the number of records on disk (tests, metrics).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// prune deletes the oldest final records beyond KeepFinal (s.mu held).
func (s *Store) prune() {
	if s.o.KeepFinal <= 0 {
		return
	}
	var finals []string
	for k, e := range s.index {
		if e.final {
			finals = append(finals, k)
		}
	}
	if len(finals) <= s.o.KeepFinal {
		return
	}
	sort.Slice(finals, func(i, j int) bool {
		a, b := s.index[finals[i]], s.index[finals[j]]
		return a.savedAt.Before(b.savedAt) || a.savedAt.Equal(b.savedAt) && finals[i] < finals[j]
	})
	drop := finals[:len(finals)-s.o.KeepFinal]
	for _, k := range drop {
		delete(s.index, k)
		if err := os.Remove(filepath.Join(s.dir, k+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("could not delete an old record", "key", k, "err", err)
		}
	}
	// Records loaded at Open and not handed out yet go too.
	s.loaded = slices.DeleteFunc(s.loaded, func(r Record) bool { return slices.Contains(drop, r.Key) })
	s.syncDir()
}
