package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/testbin"
)

// helpEnv matches the variable of a flag in -h output.
var helpEnv = regexp.MustCompile(`\(env (LARIAT_[A-Z0-9_]+)\)`)

// TestREADMEEnvTable builds every binary and checks that each row of the
// README's table of environment variables lists exactly the variables the
// row's commands show in their -h output.
func TestREADMEEnvTable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n### Environment variables\n")
	if !ok {
		t.Fatal("README.md has no Environment variables section")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := testbin.All(t, t.TempDir())
	rows := 0
	seen := map[string]bool{}
	for line := range strings.Lines(table) {
		if strings.HasPrefix(line, "## ") {
			break
		}
		cells := strings.Split(strings.TrimSpace(line), " | ")
		if len(cells) != 2 || !strings.HasPrefix(cells[0], "| `lariat") {
			continue
		}
		rows++
		want := strings.Split(strings.Trim(strings.TrimSuffix(cells[1], " |"), "`"), "`, `")
		for _, command := range strings.Split(strings.Trim(strings.TrimPrefix(cells[0], "| "), "`"), "`, `") {
			args := strings.Fields(command)
			seen[args[0]] = true
			out, _ := exec.CommandContext(ctx, filepath.Join(bin, args[0]), append(args[1:], "-h")...).CombinedOutput()
			var got []string
			for _, m := range helpEnv.FindAllStringSubmatch(string(out), -1) {
				got = append(got, m[1])
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("README lists for %s:\n  %s\n%s -h shows:\n  %s", command, strings.Join(want, " "), command, strings.Join(got, " "))
			}
		}
	}
	if rows < 10 {
		t.Fatalf("the README table has %d rows", rows)
	}
	entries, err := os.ReadDir("../../cmd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && !seen[e.Name()] {
			t.Errorf("the README table has no row for %s", e.Name())
		}
	}
}
