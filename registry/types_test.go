package registry

import (
	"strings"
	"testing"
)

func TestValidateAlias(t *testing.T) {
	for _, ok := range []string{"champion", "Champion-2", "a_b", "v", "vx1", "v1a"} {
		if err := ValidateAlias(ok); err != nil {
			t.Fatalf("ValidateAlias(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "latest", "LATEST", "v1", "V22", "a b", "a/b", "a@b", strings.Repeat("a", 256)} {
		if err := ValidateAlias(bad); err == nil {
			t.Fatalf("ValidateAlias(%q) accepted it", bad)
		}
	}
}
