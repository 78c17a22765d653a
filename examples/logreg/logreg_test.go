package logreg

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// synthetic returns rows whose label depends on the first feature (positively)
// and the second (negatively); the third is noise, some values are missing.
func synthetic(n int, seed uint64) ([][]float64, []float64) {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([][]float64, n)
	y := make([]float64, n)
	for i := range x {
		a, b, c := r.Float64()*10, r.NormFloat64()*3+50, r.NormFloat64()
		if i%17 == 0 {
			c = math.NaN()
		}
		x[i] = []float64{a, b, c}
		if 0.8*(a-5)-0.5*(b-50)+r.NormFloat64() > 0 {
			y[i] = 1
		}
	}
	return x, y
}

func TestTrainAndEvaluate(t *testing.T) {
	x, y := synthetic(400, 1)
	a := &Artifact{Name: "m", Entity: "driver_id", Features: []string{"a", "b", "c"},
		FeatureRefs: []string{"v:a", "v:b", "v:c"}}
	var losses []float64
	err := Train(a, x, y, TrainOptions{LearningRate: 0.5, Epochs: 200, Progress: func(_ int, l float64) { losses = append(losses, l) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(losses) != 10 || losses[9] >= losses[0] {
		t.Fatalf("loss did not fall: %v", losses)
	}
	if a.Weights[0] <= 0 || a.Weights[1] >= 0 || math.Abs(a.Weights[2]) > math.Abs(a.Weights[0])/2 {
		t.Fatalf("weights %v do not follow the data", a.Weights)
	}
	tx, ty := synthetic(200, 2)
	scores := make([]float64, len(tx))
	for i, row := range tx {
		scores[i] = a.Score(row)
	}
	m := Evaluate(scores, ty)
	if m["accuracy"] < 0.8 || m["auc"] < 0.9 || m["logloss"] > 0.5 {
		t.Fatalf("metrics: %v", m)
	}

	dir := t.TempDir()
	if err := a.Save(dir); err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Score(tx[0]) != a.Score(tx[0]) {
		t.Fatal("a loaded artifact scores differently")
	}
	if i, ok := b.Index("v__b"); !ok || i != 1 {
		t.Fatalf("full name index: %d %v", i, ok)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("loaded a missing file")
	}
}

func TestAUC(t *testing.T) {
	f := func(scores, y []float64, want float64, wantOK bool) {
		t.Helper()
		got, ok := AUC(scores, y)
		if ok != wantOK || math.Abs(got-want) > 1e-12 {
			t.Fatalf("AUC(%v, %v) = %v %v, want %v %v", scores, y, got, ok, want, wantOK)
		}
	}
	f([]float64{0.1, 0.4, 0.35, 0.8}, []float64{0, 0, 1, 1}, 0.75, true)
	f([]float64{0.1, 0.9}, []float64{0, 1}, 1, true)
	f([]float64{0.9, 0.1}, []float64{0, 1}, 0, true)
	f([]float64{0.5, 0.5}, []float64{0, 1}, 0.5, true)
	f([]float64{0.2, 0.3}, []float64{1, 1}, 0, false)
}

func TestValidate(t *testing.T) {
	f := func(a Artifact) {
		t.Helper()
		if err := a.Validate(); err == nil {
			t.Fatalf("accepted %+v", a)
		}
	}
	f(Artifact{Format: "other"})
	f(Artifact{Format: Format})
	f(Artifact{Format: Format, Features: []string{"a"}, Mean: []float64{0}, Std: []float64{1}})
	f(Artifact{Format: Format, Features: []string{"a", "a"}, Mean: []float64{0, 0}, Std: []float64{1, 1}, Weights: []float64{1, 1}})
	f(Artifact{Format: Format, Features: []string{"a"}, Mean: []float64{0}, Std: []float64{0}, Weights: []float64{1}})
}
