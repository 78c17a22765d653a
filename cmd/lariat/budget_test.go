package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// maxBinarySize bounds `go build ./cmd/lariat` (symbols and DWARF
// included, as built by default).
const maxBinarySize = 16 << 20

// notLinked are the packages the gateway must not link: they belong to
// the sidecars (the registry's stores, lariat-train's Kubernetes clients,
// lariat-predlog's Parquet and Kafka sinks), or link gRPC and through
// golang.org/x/net/trace html/template.
var notLinked = []string{
	"github.com/jackc/pgx",
	"go.etcd.io/bbolt",
	"k8s.io/",
	"github.com/parquet-go/",
	"github.com/twmb/franz-go",
	"google.golang.org/grpc",
	"golang.org/x/net/trace",
}

// TestBinaryBudget keeps the gateway lean: its size, the packages it
// links, and no reachable reflect.Value.Method or MethodByName, whose use
// turns off the linker's dead-method elimination for the whole binary.
func TestBinaryBudget(t *testing.T) {
	bin := sharedLariat(t)
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > maxBinarySize {
		t.Errorf("lariat is %d bytes (%.2f MiB), over the budget of %d MiB", st.Size(), float64(st.Size())/(1<<20), maxBinarySize>>20)
	}
	t.Logf("lariat is %d bytes (%.2f MiB)", st.Size(), float64(st.Size())/(1<<20))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	deps, err := exec.CommandContext(ctx, goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(deps)) {
		for _, bad := range notLinked {
			if strings.HasPrefix(pkg, bad) {
				t.Errorf("lariat links %s", pkg)
			}
		}
	}

	syms, err := exec.CommandContext(ctx, goTool, "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	for line := range strings.Lines(string(syms)) {
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		switch name := fields[len(fields)-1]; name {
		case "reflect.Value.Method", "reflect.Value.MethodByName":
			t.Errorf("lariat links %s: the linker keeps every exported method", name)
		}
	}
}
