package server

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/registry"
)

// crashChildEnv makes TestBoltCrashChild act as the writer process of
// TestBoltCrashSafety, writing to the bbolt file the variable names.
const crashChildEnv = "LARIAT_REGISTRY_CRASH_CHILD"

// TestBoltCrashChild is the child process of TestBoltCrashSafety: it writes versions
// and tags as fast as it can and prints one "ack" line after each write returned.
func TestBoltCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("helper process for TestBoltCrashSafety")
	}
	store, err := OpenBoltStore(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: %v\n", err)
		os.Exit(2)
	}
	svc := NewService(store)
	ctx := context.Background()
	if _, err := svc.CreateModel(ctx, registry.CreateModelRequest{Name: "crash"}); err != nil && registry.ErrorCode(err) != registry.CodeResourceAlreadyExists {
		fmt.Fprintf(os.Stderr, "child: %v\n", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	ack := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(os.Stdout, "ack "+format+"\n", args...)
		mu.Unlock()
	}
	pid := os.Getpid()
	deadline := time.Now().Add(2 * time.Minute)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
				v, err := svc.CreateVersion(ctx, registry.CreateVersionRequest{
					Name: "crash", Source: fmt.Sprintf("s3://crash/%d/%d/%d", pid, w, i),
					Params: map[string]string{"payload": strings.Repeat("x", 512)},
				})
				if err != nil {
					fmt.Fprintf(os.Stderr, "child: %v\n", err)
					os.Exit(2)
				}
				ack("version %s %s", v.Version, v.Source)
				key := fmt.Sprintf("t-%d-%d-%d", pid, w, i)
				if err := svc.SetModelTag(ctx, "crash", key, "v"); err != nil {
					fmt.Fprintf(os.Stderr, "child: %v\n", err)
					os.Exit(2)
				}
				ack("tag %s", key)
			}
		}()
	}
	wg.Wait()
	os.Exit(0)
}

// TestBoltCrashSafety SIGKILLs a process in the middle of writing to the embedded
// store, twice, and checks that the file opens cleanly and holds every write the
// process acknowledged.
func TestBoltCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	path := filepath.Join(t.TempDir(), "registry.db")
	versions := map[int]string{} // acknowledged version -> source
	tags := map[string]bool{}
	for round := 0; round < 2; round++ {
		runAndKill(t, path, versions, tags)
		store, err := OpenBoltStore(path)
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		if err := store.check(); err != nil {
			t.Fatalf("round %d: bbolt consistency check: %v", round, err)
		}
		verifyAcked(t, store, versions, tags)
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func runAndKill(t *testing.T, path string, versions map[int]string, tags map[string]bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBoltCrashChild$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill after a number of acknowledged writes, or after a while if the machine is slow.
	const killAfter = 200
	timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	defer timer.Stop()
	sc := bufio.NewScanner(out)
	acks, killed := 0, false
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "ack" {
			continue
		}
		switch {
		case len(fields) == 4 && fields[1] == "version":
			n, err := strconv.Atoi(fields[2])
			if err != nil {
				t.Fatalf("bad ack %q", sc.Text())
			}
			if prev, dup := versions[n]; dup {
				t.Fatalf("version %d acknowledged twice (%s and %s)", n, prev, fields[3])
			}
			versions[n] = fields[3]
		case len(fields) == 3 && fields[1] == "tag":
			tags[fields[2]] = true
		}
		acks++
		if acks == killAfter && !killed {
			// Lines already in the pipe were acknowledged before the kill: keep reading them.
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("writer did not die by SIGKILL: %v; stderr:\n%s", err, stderr.String())
	}
	if acks == 0 {
		t.Fatalf("writer acknowledged nothing; stderr:\n%s", stderr.String())
	}
	t.Logf("writer killed after %d acknowledged writes", acks)
}

func verifyAcked(t *testing.T, store Store, versions map[int]string, tags map[string]bool) {
	t.Helper()
	ctx := context.Background()
	svc := NewService(store)
	m, err := svc.GetModel(ctx, "crash")
	if err != nil {
		t.Fatal(err)
	}
	stored := map[int]string{}
	err = store.View(ctx, func(tx Tx) error {
		return tx.ScanVersions("crash", func(v *registry.ModelVersion) error {
			n, _ := strconv.Atoi(v.Version)
			stored[n] = v.Source
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	maxAcked := 0
	for n, src := range versions {
		if stored[n] != src {
			t.Fatalf("acknowledged version %d (%s) stored as %q", n, src, stored[n])
		}
		maxAcked = max(maxAcked, n)
	}
	// Numbers stay contiguous; at most one unacknowledged commit per writer may exist.
	for n := 1; n <= len(stored); n++ {
		if _, ok := stored[n]; !ok {
			t.Fatalf("version %d missing among %d stored versions", n, len(stored))
		}
	}
	if len(stored) < maxAcked || len(stored) > maxAcked+4 {
		t.Fatalf("%d versions stored, %d highest acknowledged", len(stored), maxAcked)
	}
	for key := range tags {
		if _, ok := tagValue(m.Tags, key); !ok {
			t.Fatalf("acknowledged tag %s lost", key)
		}
	}
}
