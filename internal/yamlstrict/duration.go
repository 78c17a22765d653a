package yamlstrict

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses s, a Go duration string ("150ms", "90m") or a bare
// number counted in unit (milliseconds in route files, seconds in training
// specs) of at most max. Negative and empty durations are rejected; the
// errors say which forms are accepted.
func ParseDuration(s string, unit, max time.Duration) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 || n*float64(unit) > float64(max) {
			return 0, fmt.Errorf("duration %s%s is out of range", s, unitSuffix(unit))
		}
		return time.Duration(n * float64(unit)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: use %s", s, unitHint(unit))
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return d, nil
}

func unitSuffix(unit time.Duration) string {
	if unit == time.Second {
		return "s"
	}
	return "ms"
}

func unitHint(unit time.Duration) string {
	if unit == time.Second {
		return "a number of seconds or a unit (90m, 2h)"
	}
	return "milliseconds (140) or a unit (150ms, 2s)"
}
