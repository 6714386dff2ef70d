package ingest

import (
	"errors"
	"time"
)

// A message timestamp is either an RFC 3339 string ("2022-01-01T00:00:00Z",
// "...00.123+01:00") or a JSON number counting time since the Unix epoch,
// integer or not, in a unit chosen by its magnitude:
//
//	value < 1e11          seconds       (time.time() in Python: 1640995200.5)
//	1e11 <= value < 1e14  milliseconds  (the seed's emitter, JavaScript's Date.now(): 1640995200000)
//	1e14 <= value < 1e17  microseconds
//	1e17 <= value < 1e19  nanoseconds   (Go's UnixNano, Loki's clients)
//
// Each unit then covers 1973-03-03 to 5138 (nanoseconds: 1973 to 2286), so
// a timestamp of this century is never ambiguous; a millisecond, microsecond
// or nanosecond count before 1973-03-03 is read in the next larger unit.
// The number is read as an exact decimal (no float rounding); digits below
// the nanosecond are dropped (truncated). Values below zero and of 1e19 or
// more are refused; -0 and 0 are the epoch itself. README (API) documents
// the same rule, and FuzzDecodePacketAgreesWithEncodingJSON holds this
// parser to a math/big reference of it (scan_test.go).

var (
	errTimestampNegative = errors.New("a number before the Unix epoch (negative) is not accepted")
	errTimestampTooLarge = errors.New("a number of 1e19 or more is not accepted (nanoseconds end at 1e19)")
	errTimestampType     = errors.New("must be an RFC 3339 string or a number of seconds, milliseconds, microseconds or nanoseconds since the Unix epoch")
)

// epochUnits lists, by magnitude, the digits the number's integer part may
// have in each unit and the unit's power of ten below a second.
var epochUnits = [...]struct{ maxIntDigits, subSecond int }{
	{11, 0}, // seconds: < 1e11
	{14, 3}, // milliseconds: < 1e14
	{17, 6}, // microseconds: < 1e17
	{19, 9}, // nanoseconds: < 1e19
}

// parseEpochNumber reads num, a number already checked against JSON's
// grammar, as a timestamp by the rule above. It needs no allocation: the
// significant digits are read in place.
func parseEpochNumber(num []byte) (time.Time, error) {
	if t, ok := parseEpochInteger(num); ok {
		return t, nil
	}
	i := 0
	neg := i < len(num) && num[i] == '-'
	if neg {
		i++
	}
	// mantissa = int "." frac; digits holds its significant digits (the
	// leading zeros stripped) as ranges of num, point is where the decimal
	// point falls among them: value = 0.<digits> × 10^point.
	intStart := i
	for i < len(num) && num[i] >= '0' && num[i] <= '9' {
		i++
	}
	intPart := num[intStart:i]
	var frac []byte
	if i < len(num) && num[i] == '.' {
		i++
		start := i
		for i < len(num) && num[i] >= '0' && num[i] <= '9' {
			i++
		}
		frac = num[start:i]
	}
	exp := 0
	if i < len(num) && (num[i] == 'e' || num[i] == 'E') {
		i++
		expNeg := num[i] == '-'
		if num[i] == '+' || num[i] == '-' {
			i++
		}
		for ; i < len(num); i++ {
			if exp < 1<<30 { // saturate: beyond this the value is 0 or too large anyway
				exp = exp*10 + int(num[i]-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	d := newDigits(intPart, frac)
	if d.n == 0 {
		return time.Unix(0, 0).UTC(), nil // 0, -0, 0.000e5: the epoch
	}
	if neg {
		return time.Time{}, errTimestampNegative
	}
	point := d.point + exp
	u := -1
	for k, unit := range epochUnits {
		if point <= unit.maxIntDigits {
			u = k
			break
		}
	}
	if u < 0 {
		return time.Time{}, errTimestampTooLarge
	}
	// In seconds, the integer part has secDigits digits (none when it is
	// not positive: the positions before the first significant digit are
	// zeros); the next nine are the nanoseconds, the rest is dropped.
	secDigits := point - epochUnits[u].subSecond
	var sec, nsec int64
	for k := min(secDigits, 0); k < secDigits+9; k++ {
		v := int64(d.at(k))
		if k < secDigits {
			sec = sec*10 + v
		} else {
			nsec = nsec*10 + v
		}
	}
	return time.Unix(sec, nsec).UTC(), nil
}

// parseEpochInteger is the fast path for the common form, a plain integer
// of up to 19 digits (what the seed's emitter and most clients send): ok
// is false for anything else, which the general path then reads.
func parseEpochInteger(num []byte) (_ time.Time, ok bool) {
	if len(num) == 0 || len(num) > 19 {
		return time.Time{}, false
	}
	var v uint64
	for _, c := range num {
		if c < '0' || c > '9' {
			return time.Time{}, false
		}
		v = v*10 + uint64(c-'0')
	}
	switch {
	case v < 1e11:
		return time.Unix(int64(v), 0).UTC(), true
	case v < 1e14:
		return time.Unix(int64(v/1e3), int64(v%1e3)*1e6).UTC(), true
	case v < 1e17:
		return time.Unix(int64(v/1e6), int64(v%1e6)*1e3).UTC(), true
	}
	return time.Unix(int64(v/1e9), int64(v%1e9)).UTC(), true // < 1e19: 19 digits at most
}

// digits are the significant digits of intPart "." frac without leading
// zeros, addressed by position without copying.
type digits struct {
	intPart, frac []byte
	skip          int // leading zeros stripped (across both parts)
	n             int // significant digits
	point         int // digits before the decimal point, after stripping (may be negative)
}

func newDigits(intPart, frac []byte) digits {
	d := digits{intPart: intPart, frac: frac}
	total := len(intPart) + len(frac)
	for d.skip < total && d.raw(d.skip) == '0' {
		d.skip++
	}
	d.n = total - d.skip
	d.point = len(intPart) - d.skip
	return d
}

func (d digits) raw(k int) byte {
	if k < len(d.intPart) {
		return d.intPart[k]
	}
	return d.frac[k-len(d.intPart)]
}

// at returns significant digit k (0-based; 0 outside [0, n), so that
// negative positions are the zeros after the point and positions past the
// end are trailing zeros).
func (d digits) at(k int) byte {
	if k < 0 || k >= d.n {
		return 0
	}
	return d.raw(d.skip+k) - '0'
}
