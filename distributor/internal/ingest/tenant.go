package ingest

import "fmt"

// MaxTenantLength is the longest tenant id accepted (Loki's limit).
const MaxTenantLength = 150

// ValidateTenant applies Loki's (Cortex's) tenant id rules: 1-150
// characters from [a-zA-Z0-9!-_.*'()], and not "." or "..". Tenant ids
// become label values and may become paths elsewhere, so anything else is
// refused rather than passed on.
func ValidateTenant(t string) error {
	switch {
	case t == "":
		return fmt.Errorf("is empty")
	case len(t) > MaxTenantLength:
		return fmt.Errorf("is longer than %d characters", MaxTenantLength)
	case t == "." || t == "..":
		return fmt.Errorf("must not be %q", t)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '!' || c == '-' || c == '_' || c == '.' || c == '*' || c == '\'' || c == '(' || c == ')') {
			return fmt.Errorf("has the character %q; allowed are letters, digits and !-_.*'()", c)
		}
	}
	return nil
}
