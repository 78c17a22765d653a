// Package testbin gives tests the project's binaries (./cmd/...).
// scripts/test.sh builds them all once, into the folder that
// LARIAT_TEST_BIN names, before the tests run: linking a binary takes
// seconds, and several packages run the same ones. Without the variable,
// a test builds what it runs into a folder of its own.
package testbin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Env names the folder holding every binary of ./cmd, built from the tree
// under test.
const Env = "LARIAT_TEST_BIN"

// Path returns the path of the binary of ./cmd/name: the one in the
// folder Env names, or else one built into dir.
func Path(tb testing.TB, name, dir string) string {
	tb.Helper()
	if prebuilt := os.Getenv(Env); prebuilt != "" {
		return existing(tb, filepath.Join(prebuilt, name))
	}
	build(tb, dir, "./cmd/"+name)
	return existing(tb, filepath.Join(dir, name))
}

// All returns a folder holding every binary of ./cmd: the one Env names,
// or else dir, once they are built there.
func All(tb testing.TB, dir string) string {
	tb.Helper()
	if prebuilt := os.Getenv(Env); prebuilt != "" {
		return prebuilt
	}
	build(tb, dir, "./cmd/...")
	return dir
}

func existing(tb testing.TB, path string) string {
	tb.Helper()
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("no binary %s: %v (%s names a folder built by scripts/test.sh)", path, err, Env)
	}
	return path
}

// build runs go build -o dir/ pkgs in the module's root.
func build(tb testing.TB, dir, pkgs string) {
	tb.Helper()
	root, err := moduleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", dir+string(filepath.Separator), pkgs)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkgs, err, out)
	}
}

// moduleRoot returns the nearest folder above the working one that holds
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working folder")
		}
		dir = parent
	}
}
