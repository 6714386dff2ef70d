package apierr

import (
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// A validator records every problem, the parts' under their names, and
// answers one 400 listing them all in order.
func TestProblemsCollectEveryProblemUnderItsPart(t *testing.T) {
	var p Problems
	require.NoError(t, p.Err("experiment"), "no problem, no error")
	p.Check(false, "name", "is required")
	p.Check(true, "intervalSeconds", "never said")
	f := p.In("faults[%d]", 2)
	f.Check(false, "atSeconds", "must not be negative")
	f.Include(Invalid("fault", "target", "is required: %s", "a service"))
	f.Include(errors.New("the engine said no"))
	f.Include(nil)
	p.In("configChanges[0]").Add("", "needs either a non-empty overlay or clear: true")
	p.Duration("traffic.durationSeconds", 1500_000_000, 0)

	err := p.Err("experiment")
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, http.StatusBadRequest, Status(err))
	require.Equal(t, []Problem{
		{"name", "is required"},
		{"faults[2].atSeconds", "must not be negative"},
		{"faults[2].target", "is required: a service"},
		{"faults[2]", "the engine said no"},
		{"configChanges[0]", "needs either a non-empty overlay or clear: true"},
		{"traffic.durationSeconds", "must be a whole number of seconds, at least 1"},
	}, ve.Problems)
	require.Equal(t, err.Error(), f.Err("experiment").Error(), "a part answers for the whole request")
	require.Contains(t, err.Error(), "invalid experiment: name: is required; faults[2].atSeconds: must not be negative")
}
