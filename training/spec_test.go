package training

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// golden compares got with testdata/<name>, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Fatalf("%s differs (run go test -update to accept):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

func TestParseJobSpec(t *testing.T) {
	data, err := os.ReadFile("testdata/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseJobSpec("job.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "driver-rank" || s.Hyperparameters["lr"] != "0.1" || s.Hyperparameters["epochs"] != "200" ||
		s.Timeout.Duration != 2*time.Hour || *s.Kubernetes.BackoffLimit != 2 || s.Kubeflow.Workers != 2 ||
		s.Register.Aliases[0] != "staging" || s.Resources.GPU != 1 || s.Inputs.Features[1] != "driver_stats:acc_rate" {
		t.Fatalf("decoded spec: %+v", s)
	}

	// JSON is accepted too, numbers included where strings are expected.
	js := `{"name": "j", "command": ["/bin/true"], "hyperparameters": {"lr": 0.5, "deep": true}, "timeout": 90}`
	s, err = ParseJobSpec("request", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if s.Hyperparameters["lr"] != "0.5" || s.Hyperparameters["deep"] != "true" || s.Timeout.Duration != 90*time.Second {
		t.Fatalf("decoded JSON spec: %+v", s)
	}
}

func TestParseJobSpecErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad specs: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseJobSpec(filepath.Base(f), data)
			if err == nil {
				t.Fatal("no error")
			}
			golden(t, "bad/"+name+".err", []byte(err.Error()+"\n"))
		})
	}
}

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"A": "1", "LONG_NAME": "x y"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	f := func(in, want string) {
		t.Helper()
		if got := expandVars(in, lookup); got != want {
			t.Fatalf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
	f("", "")
	f("plain", "plain")
	f("--a=$(A)", "--a=1")
	f("$(A)$(LONG_NAME)", "1x y")
	f("$(MISSING)", "$(MISSING)")
	f("$$(A)", "$(A)")
	f("cost $5", "cost $5")
	f("$(A", "$(A")
	f("end$", "end$")
}

func TestJobEnv(t *testing.T) {
	j := &Job{ID: "train-abc123", Study: "s-1", Trial: 3, Spec: JobSpec{
		Name:            "train",
		Hyperparameters: map[string]Hyperparameter{"lr": "0.1", "batch.size": "32"},
		Inputs:          Inputs{FeatureViews: []string{"a", "b"}, Labels: "/l.csv"},
	}, Outputs: Outputs{ArtifactDir: "/out", MetricsFile: "/out/m.json"}}
	var got []string
	for _, kv := range JobEnv(j) {
		got = append(got, kv[0]+"="+kv[1])
	}
	want := []string{
		"LARIAT_ARTIFACT_DIR=/out",
		"LARIAT_FEATURE_VIEWS=a,b",
		"LARIAT_HP_BATCH_SIZE=32",
		"LARIAT_HP_LR=0.1",
		`LARIAT_HYPERPARAMETERS={"batch.size":32,"lr":0.1}`,
		"LARIAT_JOB_ID=train-abc123",
		"LARIAT_JOB_NAME=train",
		"LARIAT_LABELS=/l.csv",
		"LARIAT_METRICS_FILE=/out/m.json",
		"LARIAT_TRIAL=3",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("JobEnv:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestExpandEndpoint(t *testing.T) {
	got, err := expandEndpoint("http://m-{model}-{version}/{job}/{trial}", "driver rank", "7", "j-1", 2)
	if err != nil || got != "http://m-driver%20rank-7/j-1/2" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := expandEndpoint("http://x/{port}", "m", "1", "j", 0); err == nil || !strings.Contains(err.Error(), "{port}") {
		t.Fatalf("unknown placeholder: %v", err)
	}
}

func TestReadMetrics(t *testing.T) {
	m, err := readMetrics([]byte(`{"auc": 0.9, "logloss": 0.31, "note": "x", "n": 10}`), "")
	if err != nil || len(m) != 3 || m["auc"] != 0.9 || m["n"] != 10 {
		t.Fatalf("got %v, %v", m, err)
	}
	if _, err := readMetrics([]byte(`[1,2]`), ""); err == nil {
		t.Fatal("an array was accepted")
	}
	m, err = readMetrics(nil, filepath.Join(t.TempDir(), "missing.json"))
	if err != nil || m != nil {
		t.Fatalf("missing file: %v, %v", m, err)
	}
}

// TestHyperparameterTypes checks that hyperparameters reach the job with
// their YAML or JSON types: numbers and bools as such in
// LARIAT_HYPERPARAMETERS, strings quoted, and all as text in LARIAT_HP_*.
func TestHyperparameterTypes(t *testing.T) {
	f := func(spec, wantJSON string, wantHP ...string) {
		t.Helper()
		s, err := ParseJobSpec("job.yaml", []byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		var hp []string
		var js string
		for _, kv := range JobEnv(&Job{ID: "j-000000", Spec: *s}) {
			switch {
			case kv[0] == EnvHyperparameters:
				js = kv[1]
			case strings.HasPrefix(kv[0], "LARIAT_HP_"):
				hp = append(hp, kv[0]+"="+kv[1])
			}
		}
		if js != wantJSON || strings.Join(hp, " ") != strings.Join(wantHP, " ") {
			t.Fatalf("%s:\n got %s %v\nwant %s %v", spec, js, hp, wantJSON, wantHP)
		}
	}
	f("name: j\ncommand: [x]\nhyperparameters: {epochs: 200, lr: 0.1}\n",
		`{"epochs":200,"lr":0.1}`, "LARIAT_HP_EPOCHS=200", "LARIAT_HP_LR=0.1")
	f("name: j\ncommand: [x]\nhyperparameters: {solver: adam, tag: '7', deep: true, eps: 1e-8, big: 0x10, neg: -3}\n",
		`{"big":16,"deep":true,"eps":1e-8,"neg":-3,"solver":"adam","tag":"7"}`,
		"LARIAT_HP_BIG=16", "LARIAT_HP_DEEP=true", "LARIAT_HP_EPS=1e-8", "LARIAT_HP_NEG=-3", "LARIAT_HP_SOLVER=adam", "LARIAT_HP_TAG=7")
	f(`{"name": "j", "command": ["x"], "hyperparameters": {"epochs": 200, "lr": 0.1, "opt": "sgd"}}`,
		`{"epochs":200,"lr":0.1,"opt":"sgd"}`, "LARIAT_HP_EPOCHS=200", "LARIAT_HP_LR=0.1", "LARIAT_HP_OPT=sgd")

	bad := func(spec, want string) {
		t.Helper()
		_, err := ParseJobSpec("job.yaml", []byte(spec))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: error %v, want %q", spec, err, want)
		}
	}
	bad("name: j\ncommand: [x]\nhyperparameters: {lr: [1, 2]}\n", "job.yaml:3:23: a hyperparameter must be a number, a string or a bool")
	bad("name: j\ncommand: [x]\nhyperparameters: {lr: .nan}\n", "job.yaml:3:23: .nan is not a finite number")
	bad("name: j\ncommand: [x]\nhyperparameters: {lr: null}\n", "job.yaml:3:23: a hyperparameter must be a number")

	// Jobs saved before hyperparameters had types (strings) still load.
	var j JobSpec
	if err := json.Unmarshal([]byte(`{"hyperparameters": {"lr": "0.1", "n": 3}}`), &j); err != nil {
		t.Fatal(err)
	}
	if j.Hyperparameters["lr"] != `"0.1"` || j.Hyperparameters["n"] != "3" {
		t.Fatalf("decoded %v", j.Hyperparameters)
	}
	if err := json.Unmarshal([]byte(`{"hyperparameters": {"lr": {"a": 1}}}`), &j); err == nil {
		t.Fatal("an object hyperparameter was accepted")
	}
}
