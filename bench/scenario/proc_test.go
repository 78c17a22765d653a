package scenario

import (
	"slices"
	"testing"
)

func TestChildrenGetNoFlagVariables(t *testing.T) {
	env := []string{"PATH=/bin", "LARIAT_ADMIN_TOKEN=x", "HOME=/root", "LARIAT_LOG_LEVEL=debug", "XLARIAT_A=1"}
	got := withoutFlagEnv(env)
	if want := []string{"PATH=/bin", "HOME=/root", "XLARIAT_A=1"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if len(env) != 5 || env[1] != "LARIAT_ADMIN_TOKEN=x" {
		t.Fatalf("the input changed: %q", env)
	}
}
