package scenario

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/bench"
	"github.com/lariat-gw/lariat/internal/testbin"
)

// buildBinaries returns lariat-bench and lariat, built for the test.
func buildBinaries(t *testing.T) (benchBin, lariatBin string) {
	t.Helper()
	dir := t.TempDir()
	return testbin.Path(t, "lariat-bench", dir), testbin.Path(t, "lariat", dir)
}

// TestScenarioSmoke runs short scenarios end to end with real processes and
// checks that the reports are written and every request was answered. It
// asserts nothing about timing.
func TestScenarioSmoke(t *testing.T) {
	benchBin, lariatBin := buildBinaries(t)
	f := func(name string, d time.Duration, rounds int, check func(ph *Phase)) {
		t.Helper()
		out := t.TempDir()
		prof := t.TempDir()
		var log, stdout strings.Builder
		o, err := Run(context.Background(), Options{
			Name: name, Duration: d, Rounds: rounds, Warmup: 200 * time.Millisecond, Connections: 4,
			Out: out, CPUProfile: prof, BenchBin: benchBin, LariatBin: lariatBin,
			Log: &log, Stdout: &stdout,
		})
		if err != nil {
			t.Fatalf("%s: %v\nlog:\n%s", name, err, log.String())
		}
		if len(o.Phases) != 1 || len(o.Phases[0].Results) != 2 {
			t.Fatalf("%s: phases %+v", name, o.Phases)
		}
		ph := o.Phases[0]
		for _, r := range ph.Results {
			if r.Requests == 0 || r.OK != r.Requests || r.Errors.Total != 0 || r.Interrupted {
				t.Fatalf("%s through %s: %d requests, %d ok, errors %+v", name, r.Name, r.Requests, r.OK, r.Errors)
			}
		}
		for _, path := range append([]string{ph.JSON, ph.HTML, filepath.Join(out, fileName(name)+"-summary.json")}, ph.Profiles...) {
			if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
				t.Fatalf("%s: %s not written: %v", name, path, err)
			}
		}
		if len(ph.Profiles) != 2 {
			t.Fatalf("%s: profiles %v", name, ph.Profiles)
		}
		file, err := os.Open(ph.JSON)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		rep, err := bench.ReadReport(file)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Baseline != "floor" || len(rep.Runs) != 2 || rep.Runs[0].Name != "lariat" || len(rep.Ratios) != 1 {
			t.Fatalf("%s: report baseline %q, %d runs", name, rep.Baseline, len(rep.Runs))
		}
		if !strings.Contains(stdout.String(), "lariat / floor: throughput") || !strings.Contains(log.String(), "parity") {
			t.Fatalf("%s: summary:\n%s\nlog:\n%s", name, stdout.String(), log.String())
		}
		if runtime.GOOS == "linux" && (ph.Lariat.CPUSeconds <= 0 || ph.Floor.CPUSeconds <= 0 || ph.CPURatio <= 0) {
			t.Fatalf("%s: no CPU time measured: lariat %+v floor %+v", name, ph.Lariat, ph.Floor)
		}
		if check != nil {
			check(ph)
		}
	}
	// Each model is called once per request, through either path.
	callsPerRequest := func(ph *Phase) {
		for i, run := range []string{"lariat", "floor"} {
			for k, st := range ph.Models[run] {
				if st.Requests != ph.Results[i].Requests {
					t.Fatalf("%s run: model %s saw %d requests for %d sent", run, k, st.Requests, ph.Results[i].Requests)
				}
			}
		}
	}
	f(Fanout2, 500*time.Millisecond, 1, callsPerRequest)
	f(FeaturesFanout2, 400*time.Millisecond, 2, callsPerRequest)
}

// TestTenantsSmoke runs the tenants scenario briefly with real processes
// and checks that every phase ran and refused what was over quota. It
// asserts nothing about timing.
func TestTenantsSmoke(t *testing.T) {
	benchBin, lariatBin := buildBinaries(t)
	out := t.TempDir()
	var log, stdout strings.Builder
	o, err := RunTenants(context.Background(), TenantsOptions{
		Quota: 50, Rate: 50,
		Own: Own{Duration: time.Second, Out: out, BenchBin: benchBin, LariatBin: lariatBin, Log: &log, Stdout: &stdout},
	})
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	for name, r := range map[string]*bench.Result{"b alone": o.BAlone, "a": o.A, "b": o.B, "g through gateway 1": o.G1, "g through gateway 2": o.G2} {
		if r == nil || r.Requests == 0 || r.Errors.Connection+r.Errors.Other+r.Errors.Timeout != 0 {
			t.Fatalf("%s: %+v", name, r)
		}
	}
	// 150 requests a second against a rate of 50 and a burst of 5: some
	// are refused whatever the machine's speed.
	if o.A.StatusCodes["429"] == 0 || o.G1.StatusCodes["429"]+o.G2.StatusCodes["429"] == 0 {
		t.Fatalf("no 429s: a %v, g %v %v", o.A.StatusCodes, o.G1.StatusCodes, o.G2.StatusCodes)
	}
	if o.B.OK != o.B.Requests || o.BAlone.OK != o.BAlone.Requests {
		t.Fatalf("tenant b refused: %v alone, %v next to a", o.BAlone.StatusCodes, o.B.StatusCodes)
	}
	if fi, err := os.Stat(filepath.Join(out, "tenants-summary.json")); err != nil || fi.Size() == 0 {
		t.Fatalf("summary not written: %v", err)
	}
	if !strings.Contains(stdout.String(), "tenant g: offered") {
		t.Fatalf("summary:\n%s", stdout.String())
	}
}

// TestOverloadSmoke runs the overload scenario briefly with real processes
// and checks that every run happened, that the gateway's defaults refused
// part of twice the model's capacity (unless the gateway was short of CPU,
// when its upstream limit holds by design) and that with its limits off it
// refused nothing. It asserts nothing about timing.
func TestOverloadSmoke(t *testing.T) {
	benchBin, lariatBin := buildBinaries(t)
	out := t.TempDir()
	var log, stdout strings.Builder
	o, err := RunOverload(context.Background(), OverloadOptions{
		Workers: 4,
		Own:     Own{Duration: time.Second, Out: out, BenchBin: benchBin, LariatBin: lariatBin, Log: &log, Stdout: &stdout},
	})
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	if o.CapacityRPS <= 0 || len(o.Gateways) != 2 {
		t.Fatalf("capacity %g, %d gateways", o.CapacityRPS, len(o.Gateways))
	}
	for _, g := range o.Gateways {
		for _, r := range []*bench.Result{g.Unloaded, g.Overloaded, g.Sustained} {
			if r == nil || r.Requests == 0 || r.OK == 0 {
				t.Fatalf("%s: %+v", g.Name, r)
			}
		}
	}
	d := o.Gateways[0]
	if d.Overloaded.StatusCodes["503"] != d.Refused {
		t.Fatalf("defaults refused %d of twice the capacity, %d answers 503: %v", d.Refused, d.Overloaded.StatusCodes["503"], d.Overloaded.StatusCodes)
	}
	// On a machine this busy, the limit holds rather than refuse calls
	// the model could serve; the gateway says so.
	if d.Refused == 0 && d.CPUHeldWindows == 0 {
		t.Fatalf("defaults refused none of twice the capacity, and no limit window was held for want of CPU: %v", d.Overloaded.StatusCodes)
	}
	t.Logf("defaults: %d refused of twice the capacity, %d limit windows held for want of CPU", d.Refused, d.CPUHeldWindows)
	if off := o.Gateways[1]; off.Refused != 0 {
		t.Fatalf("limits off refused %d: %v", off.Refused, off.Overloaded.StatusCodes)
	}
	if fi, err := os.Stat(filepath.Join(out, "overload-summary.json")); err != nil || fi.Size() == 0 {
		t.Fatalf("summary not written: %v", err)
	}
	if !strings.Contains(stdout.String(), "model capacity") {
		t.Fatalf("summary:\n%s", stdout.String())
	}
}
