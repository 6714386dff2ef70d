package records

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type doc struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
	Text    string `json:"text,omitempty"`
}

func open(t *testing.T, dir string, o Options) (*Store, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	s, err := Open(dir, o)
	require.NoError(t, err)
	return s, &logs
}

func loaded(s *Store) map[string]doc {
	out := map[string]doc{}
	s.Each(func(key string, data []byte) error {
		var d doc
		if err := json.Unmarshal(data, &d); err != nil {
			return err
		}
		out[key] = d
		return nil
	})
	return out
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestARecordPutIsReadBackAfterReopeningWithItsBytesIntact(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	// Characters json.Marshal escapes (<, >, &, U+2028) must not upset
	// the checksum of the data's bytes.
	require.NoError(t, s.Put("x-1", false, doc{ID: "x-1", Version: 1, Text: "<b>a & b</b>\u2028 é"}))
	require.NoError(t, s.Put("x-1", true, doc{ID: "x-1", Version: 2, Text: "<b>a & b</b>\u2028 é"}))
	require.Equal(t, []string{"x-1.json"}, files(t, dir), "one file per record, no temporary left")

	s2, _ := open(t, dir, Options{})
	got := loaded(s2)
	require.Equal(t, doc{ID: "x-1", Version: 2, Text: "<b>a & b</b>\u2028 é"}, got["x-1"])
	require.Zero(t, s2.Skipped())
	require.Empty(t, loaded(s2), "Each hands the records out once")
}

func TestATruncatedRecordIsSkippedCountedAndSetAsideAndTheRestLoads(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	require.NoError(t, s.Put("x-good", true, doc{ID: "x-good", Version: 1}))
	require.NoError(t, s.Put("x-torn", true, doc{ID: "x-torn", Version: 1, Text: strings.Repeat("sample ", 100)}))
	path := filepath.Join(dir, "x-torn.json")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b[:len(b)/2], 0o600)) // a torn write: half the bytes
	require.NoError(t, os.WriteFile(filepath.Join(dir, "x-empty.json"), nil, 0o600))

	s2, logs := open(t, dir, Options{})
	got := loaded(s2)
	require.Equal(t, map[string]doc{"x-good": {ID: "x-good", Version: 1}}, got)
	require.EqualValues(t, 2, s2.Skipped())
	require.ElementsMatch(t, []string{"x-good.json", "x-torn.json.corrupt", "x-empty.json.corrupt"}, files(t, dir))
	require.Contains(t, logs.String(), `"msg":"unreadable record skipped and set aside","state_dir":"`+dir+`","file":"x-torn.json"`)

	s3, _ := open(t, dir, Options{})
	require.Zero(t, s3.Skipped(), "a record set aside is not counted again at the next start")
	require.Len(t, loaded(s3), 1)
}

func TestARecordWhoseBytesChangedButStillParseIsCaughtByItsChecksum(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	require.NoError(t, s.Put("x-1", true, doc{ID: "x-1", Version: 41}))
	path := filepath.Join(dir, "x-1.json")
	b, _ := os.ReadFile(path)
	require.NoError(t, os.WriteFile(path, bytes.Replace(b, []byte(`"version":41`), []byte(`"version":42`), 1), 0o600))

	s2, logs := open(t, dir, Options{})
	require.Empty(t, loaded(s2))
	require.EqualValues(t, 1, s2.Skipped())
	require.Contains(t, logs.String(), "checksum mismatch")
}

func TestARecordTheCallerCannotReadIsSkippedAndCounted(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	require.NoError(t, s.Put("x-1", true, []int{1, 2})) // valid JSON, not a doc
	require.NoError(t, s.Put("x-2", true, doc{ID: "x-2"}))

	s2, _ := open(t, dir, Options{})
	require.Equal(t, map[string]doc{"x-2": {ID: "x-2"}}, loaded(s2))
	require.EqualValues(t, 1, s2.Skipped())
	require.Equal(t, 1, s2.Len())
	require.ElementsMatch(t, []string{"x-1.json.corrupt", "x-2.json"}, files(t, dir))
}

func TestLeftoverTemporaryFilesOfAnInterruptedWriteAreRemoved(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	require.NoError(t, s.Put("x-1", false, doc{ID: "x-1", Version: 1}))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".tmp-x-1.json-0badcafe"), []byte(`{"format":1,"key":"x-1","da`), 0o600))

	s2, _ := open(t, dir, Options{})
	require.Equal(t, doc{ID: "x-1", Version: 1}, loaded(s2)["x-1"], "the previous version is intact")
	require.Zero(t, s2.Skipped())
	require.Equal(t, []string{"x-1.json"}, files(t, dir))
}

func TestOnlyTheLastKeepFinalFinalRecordsAreKeptAndUnfinishedOnesAlways(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{KeepFinal: 3})
	require.NoError(t, s.Put("x-running", false, doc{ID: "x-running"}))
	for i := range 10 {
		require.NoError(t, s.Put(fmt.Sprintf("x-%02d", i), true, doc{Version: i}))
	}
	require.ElementsMatch(t, []string{"x-running.json", "x-07.json", "x-08.json", "x-09.json"}, files(t, dir))
	require.Equal(t, 4, s.Len())

	// A bound lowered between two runs applies at Open.
	s2, _ := open(t, dir, Options{KeepFinal: 1})
	got := loaded(s2)
	require.Len(t, got, 2)
	require.Contains(t, got, "x-running")
	require.Contains(t, got, "x-09")
	require.ElementsMatch(t, []string{"x-running.json", "x-09.json"}, files(t, dir))
}

func TestTooLargeRecordsAndBadKeysAreRefusedAndNothingIsWritten(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{MaxBytes: 1000})
	err := s.Put("x-1", true, doc{Text: strings.Repeat("a", 1000)})
	require.ErrorIs(t, err, ErrTooLarge)
	for _, k := range []string{"", "../escape", ".hidden", "a/b", strings.Repeat("k", 129)} {
		require.Error(t, s.Put(k, true, doc{}), "key %q", k)
	}
	require.Empty(t, files(t, dir))
}

func TestQuarantinedFilesAreBoundedToo(t *testing.T) {
	dir := t.TempDir()
	for i := range 15 {
		name := filepath.Join(dir, fmt.Sprintf("x-%02d.json", i))
		require.NoError(t, os.WriteFile(name, []byte("{"), 0o600))
		old := time.Now().Add(time.Duration(i-20) * time.Minute)
		require.NoError(t, os.Chtimes(name, old, old))
	}
	s, _ := open(t, dir, Options{KeepCorrupt: 4})
	require.EqualValues(t, 15, s.Skipped())
	require.Len(t, files(t, dir), 4)
}

func TestAnUnwritableDirectoryIsAnErrorAtOpen(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere: a file where the directory should be
		// fails for everyone.
		f := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(f, nil, 0o600))
		_, err := Open(filepath.Join(f, "sub"), Options{})
		require.ErrorContains(t, err, "state directory")
		return
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o500))
	_, err := Open(dir, Options{})
	require.ErrorContains(t, err, "not writable")
}

// The writer process of TestAWriterKilledMidWriteLeavesACompleteRecord:
// it rewrites one ~1 MB record with growing versions, and announces
// "blocked" and blocks at RECORDS_TEST_STAGE of the write of version 3,
// to be killed there (without a stage it runs until killed).
func TestMain(m *testing.M) {
	if dir := os.Getenv("RECORDS_TEST_WRITER_DIR"); dir != "" {
		s, err := Open(dir, Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		v := 0
		testHook = func(stage string) {
			if v == 3 && stage == os.Getenv("RECORDS_TEST_STAGE") {
				fmt.Println("blocked")
				select {}
			}
		}
		text := strings.Repeat("x", 1<<20)
		for v = 1; ; v++ {
			if err := s.Put("x-1", false, doc{ID: "x-1", Version: v, Text: text}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			fmt.Println(v)
		}
	}
	os.Exit(m.Run())
}

func TestAWriterKilledMidWriteLeavesACompleteRecord(t *testing.T) {
	for _, tc := range []struct {
		stage     string
		want      int // the version read back; 0: at least the last announced
		tmpBefore bool
	}{
		{stage: "half-written", want: 2, tmpBefore: true}, // torn: the new version's file is half there
		{stage: "renamed", want: 3},                       // renamed, the directory not synced yet
		{},                                                // wherever the kill lands
	} {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "RECORDS_TEST_WRITER_DIR="+dir, "RECORDS_TEST_STAGE="+tc.stage)
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(t, cmd.Start())
		ready := func() bool { return strings.Contains(out.String(), "blocked") }
		if tc.stage == "" {
			ready = func() bool { return lastVersion(out.String()) >= 5 }
		}
		deadline := time.Now().Add(30 * time.Second)
		for !ready() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		require.True(t, ready(), "writer output: %s", out.String())
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		cmd.Wait()
		if tc.tmpBefore {
			require.Len(t, files(t, dir), 2, "the torn temporary file is there: %v", files(t, dir))
		}

		s, _ := open(t, dir, Options{})
		got := loaded(s)
		require.Zero(t, s.Skipped(), "%s: a killed writer never leaves a torn record", tc.stage)
		if tc.want > 0 {
			require.Equal(t, tc.want, got["x-1"].Version, tc.stage)
		} else {
			require.GreaterOrEqual(t, got["x-1"].Version, lastVersion(out.String()), "every version Put returned for survives")
		}
		require.Len(t, got["x-1"].Text, 1<<20)
		require.Equal(t, []string{"x-1.json"}, files(t, dir), "%s: the interrupted write's temporary file is gone", tc.stage)
	}
}

func lastVersion(out string) int {
	f := strings.Fields(out)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[len(f)-1])
	return n
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
