package featurefetch

import "unsafe"

// b2s returns a string sharing b's memory. The string is valid only while b
// is neither modified nor reused; callers must not keep it past that point.
func b2s(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// s2b returns a byte slice sharing s's memory. The slice must only be read:
// strings are immutable.
func s2b(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
