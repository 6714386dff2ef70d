package ids

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIDsAreAPrefixAndTwelveHexDigitsAndDoNotRepeat(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := New(Fault)
		require.Regexp(t, regexp.MustCompile(`^f-[0-9a-f]{12}$`), id)
		require.False(t, seen[id])
		seen[id] = true
	}
}
