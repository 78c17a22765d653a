package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrebuiltFolder(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lariat"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(Env, dir)
	if got := Path(t, "lariat", t.TempDir()); got != filepath.Join(dir, "lariat") {
		t.Fatalf("Path = %s, want the prebuilt one", got)
	}
	if got := All(t, t.TempDir()); got != dir {
		t.Fatalf("All = %s, want %s", got, dir)
	}
}

func TestBuildsWithoutTheVariable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	t.Setenv(Env, "")
	dir := t.TempDir()
	bin := Path(t, "lariat-bench", dir)
	if bin != filepath.Join(dir, "lariat-bench") {
		t.Fatalf("Path = %s", bin)
	}
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	if !strings.Contains(string(out), "lariat-bench") {
		t.Fatalf("%s -h:\n%s", bin, out)
	}
}
