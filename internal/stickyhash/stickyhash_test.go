package stickyhash

import "testing"

// TestSum64IsStable: the values replicas of every version agree on.
func TestSum64IsStable(t *testing.T) {
	for _, c := range []struct {
		offset uint64
		key    string
		want   uint64
	}{
		{14695981039346656037, "", 17280346270528514342},
		{14695981039346656037, "u-42", 907548349661129008},
		{0x9e3779b97f4a7c15, "u-42", 7837070421082724961},
	} {
		if got := Sum64(c.offset, []byte(c.key)); got != c.want {
			t.Errorf("Sum64(%#x, %q) = %d, want %d", c.offset, c.key, got, c.want)
		}
	}
}
