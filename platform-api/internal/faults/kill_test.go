package faults

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// processState is the ps STAT of a container's main process, as the engine
// sees it (docker top): T is stopped by a signal.
func processState(t *testing.T, container string) string {
	t.Helper()
	out, err := exec.Command("docker", "top", container, "-o", "pid,stat").CombinedOutput()
	require.NoError(t, err, string(out))
	fields := strings.Fields(string(out)) // PID STAT <pid> <stat>
	require.GreaterOrEqual(t, len(fields), 4, string(out))
	return fields[3]
}

// kill with SIGSTOP stops the process but leaves the container running:
// docker start, the revert of the other signals, does nothing to it. It is
// reverted with SIGCONT.
func TestAKillWithSIGSTOPIsRevertedWithSIGCONT(t *testing.T) {
	m, _, p := setup(t, Limits{})
	c := name(p, "analyzer-1")
	f, err := m.Start(t.Context(), Spec{Type: Kill, Target: "analyzer-1", Signal: "SIGSTOP", Duration: time.Minute})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.HasPrefix(processState(t, c), "T") }, 10*time.Second, 50*time.Millisecond,
		"the process is stopped")
	_, err = m.StopFault(t.Context(), f.ID)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !strings.HasPrefix(processState(t, c), "T") }, 10*time.Second, 50*time.Millisecond,
		"the process runs again after the revert: %s", processState(t, c))
	got, _ := m.Get(f.ID)
	require.Equal(t, StateReverted, got.State)
}
