package faults

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dsplab/dsplab/platform-api/internal/dockertest"
)

// A restart has no end (EndsAt is nil) and holds its container while the
// engine restarts it. A second state fault on that container in the
// meantime, as an experiment's next fault would be, used to format the
// restart's end and kill the process with a nil dereference; it is a
// conflict that names the restart.
func TestAStateFaultOnAContainerBeingRestartedIsAConflict(t *testing.T) {
	m, _, p := setup(t, Limits{})
	// The target ignores SIGUSR1 (Go catches it and does nothing): stopped
	// with it, it is restarted only after the stop timeout (10 s), which
	// keeps the restart being applied long enough to be met for sure.
	c := p.RunWith("slow-stop", "target", dockertest.StopSignal("SIGUSR1"))
	since := strconv.FormatInt(time.Now().Unix()-1, 10)
	done := make(chan error, 1)
	go func() {
		_, err := m.Start(t.Context(), Spec{Type: Restart, Target: "slow-stop"})
		done <- err
	}()
	// The engine has sent the stop signal: the restart is under way.
	require.Eventually(t, func() bool {
		out, _ := exec.Command("docker", "events", "--since", since, "--until", strconv.FormatInt(time.Now().Unix(), 10),
			"--filter", "container="+c, "--filter", "event=kill", "--format", "{{.Actor.Attributes.signal}}").Output()
		return strings.Contains(string(out), "10")
	}, 20*time.Second, 100*time.Millisecond, "no SIGUSR1 (10) sent to %s", c)

	_, err := m.Start(t.Context(), Spec{Type: Pause, Target: "slow-stop", Duration: time.Minute})
	require.ErrorIs(t, err, ErrConflict)
	require.ErrorContains(t, err, "restart")
	require.Equal(t, "running", dockertest.Inspect(t, c, "{{.State.Status}}"), "the pause was not applied")

	require.NoError(t, <-done, "the restart completes")
	f, err := m.Start(t.Context(), Spec{Type: Pause, Target: "slow-stop", Duration: time.Minute})
	require.NoError(t, err, "once restarted, the container is free again")
	require.Equal(t, "paused", dockertest.Inspect(t, c, "{{.State.Status}}"))
	_, err = m.StopFault(t.Context(), f.ID)
	require.NoError(t, err)
}
