// Package logreg is the model of the examples: binary logistic regression on
// standardized numeric features, trained by full-batch gradient descent, with the
// JSON artifact the example trainer writes and the example model server loads,
// and the evaluation metrics (accuracy, log loss, ROC AUC).
package logreg

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Format names the artifact format.
const Format = "lariat-logreg/v1"

// ArtifactFile is the artifact's file name inside an artifact directory.
const ArtifactFile = "model.json"

// Artifact is a trained model as stored on disk.
type Artifact struct {
	Format string `json:"format"`
	// Name is the model's name.
	Name string `json:"name"`
	// Entity is the join key of the entities the model scores (e.g. driver_id).
	Entity string `json:"entity"`
	// Features are the input names, in weight order; FeatureRefs the
	// "view:feature" references they were read from.
	Features    []string `json:"features"`
	FeatureRefs []string `json:"feature_refs,omitempty"`
	// Mean and Std standardize each feature; a missing value counts as the mean.
	Mean    []float64 `json:"mean"`
	Std     []float64 `json:"std"`
	Weights []float64 `json:"weights"`
	Bias    float64   `json:"bias"`
	// TrainedAt, JobID, Hyperparameters and Metrics describe the training run.
	TrainedAt       time.Time          `json:"trained_at"`
	JobID           string             `json:"job_id,omitempty"`
	Hyperparameters map[string]string  `json:"hyperparameters,omitempty"`
	Metrics         map[string]float64 `json:"metrics,omitempty"`

	index map[string]int
}

// Validate checks the artifact's shape and builds its feature index.
func (a *Artifact) Validate() error {
	if a.Format != Format {
		return fmt.Errorf("artifact format %q is not %s", a.Format, Format)
	}
	k := len(a.Features)
	if k == 0 {
		return errors.New("artifact has no features")
	}
	if len(a.Mean) != k || len(a.Std) != k || len(a.Weights) != k {
		return fmt.Errorf("artifact has %d features but %d means, %d deviations and %d weights", k, len(a.Mean), len(a.Std), len(a.Weights))
	}
	a.index = make(map[string]int, 2*k)
	for i, f := range a.Features {
		if _, dup := a.index[f]; dup {
			return fmt.Errorf("artifact names feature %q twice", f)
		}
		a.index[f] = i
		if a.Std[i] <= 0 || math.IsNaN(a.Std[i]) {
			return fmt.Errorf("feature %q has a non-positive deviation", f)
		}
	}
	// Full names ("view__feature", as Feast's full_feature_names) map to the same inputs.
	for i, ref := range a.FeatureRefs {
		if i < k {
			for j := 0; j < len(ref); j++ {
				if ref[j] == ':' {
					a.index[ref[:j]+"__"+ref[j+1:]] = i
					break
				}
			}
		}
	}
	return nil
}

// Index returns the position of a feature by name (or "view__feature" full name).
func (a *Artifact) Index(name string) (int, bool) {
	i, ok := a.index[name]
	return i, ok
}

// Score returns the probability of the positive class for x (one value per
// feature, in Features order; NaN marks a missing value).
func (a *Artifact) Score(x []float64) float64 {
	z := a.Bias
	for i, v := range x {
		if math.IsNaN(v) {
			continue // the mean: 0 after standardization
		}
		z += a.Weights[i] * (v - a.Mean[i]) / a.Std[i]
	}
	return sigmoid(z)
}

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// Load reads an artifact from a file or from ArtifactFile in a directory.
func Load(path string) (*Artifact, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, ArtifactFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read artifact: %w", err)
	}
	var a Artifact
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("cannot decode artifact %s: %w", path, err)
	}
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("artifact %s: %w", path, err)
	}
	return &a, nil
}

// Save writes the artifact as ArtifactFile in dir.
func (a *Artifact) Save(dir string) error {
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot encode artifact: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create artifact directory: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, ArtifactFile), append(data, '\n'), 0o644)
}

// TrainOptions tune Train.
type TrainOptions struct {
	// LearningRate of gradient descent. Default 0.1.
	LearningRate float64
	// Epochs of full-batch gradient descent. Default 300.
	Epochs int
	// L2 is the weight decay. Default 0.
	L2 float64
	// Progress, when set, is called every tenth of the epochs with the log loss.
	Progress func(epoch int, loss float64)
}

// Train fits weights to the rows x (NaN = missing) and labels y (0 or 1), filling
// a's Mean, Std, Weights and Bias. a.Features must name the columns.
func Train(a *Artifact, x [][]float64, y []float64, opt TrainOptions) error {
	k := len(a.Features)
	if len(x) == 0 || len(x) != len(y) {
		return fmt.Errorf("need labelled rows: got %d rows and %d labels", len(x), len(y))
	}
	if opt.LearningRate <= 0 {
		opt.LearningRate = 0.1
	}
	if opt.Epochs <= 0 {
		opt.Epochs = 300
	}
	a.Format = Format
	a.Mean, a.Std = make([]float64, k), make([]float64, k)
	for j := 0; j < k; j++ {
		var sum, sq float64
		n := 0
		for _, row := range x {
			if v := row[j]; !math.IsNaN(v) {
				sum += v
				sq += v * v
				n++
			}
		}
		if n > 0 {
			a.Mean[j] = sum / float64(n)
			a.Std[j] = math.Sqrt(math.Max(sq/float64(n)-a.Mean[j]*a.Mean[j], 0))
		}
		if a.Std[j] < 1e-12 {
			a.Std[j] = 1
		}
	}
	// Standardized design matrix; missing values are 0 (the mean).
	z := make([][]float64, len(x))
	for i, row := range x {
		z[i] = make([]float64, k)
		for j, v := range row {
			if !math.IsNaN(v) {
				z[i][j] = (v - a.Mean[j]) / a.Std[j]
			}
		}
	}
	a.Weights = make([]float64, k)
	a.Bias = 0
	grad := make([]float64, k)
	n := float64(len(z))
	every := max(opt.Epochs/10, 1)
	for epoch := 1; epoch <= opt.Epochs; epoch++ {
		clear(grad)
		var gb, loss float64
		for i, row := range z {
			p := a.Bias
			for j, v := range row {
				p += a.Weights[j] * v
			}
			p = sigmoid(p)
			d := p - y[i]
			for j, v := range row {
				grad[j] += d * v
			}
			gb += d
			loss += logLoss(p, y[i])
		}
		for j := range a.Weights {
			a.Weights[j] -= opt.LearningRate * (grad[j]/n + opt.L2*a.Weights[j])
		}
		a.Bias -= opt.LearningRate * gb / n
		if opt.Progress != nil && (epoch%every == 0 || epoch == opt.Epochs) {
			opt.Progress(epoch, loss/n)
		}
	}
	return a.Validate()
}

func logLoss(p, y float64) float64 {
	const eps = 1e-15
	p = math.Min(math.Max(p, eps), 1-eps)
	return -(y*math.Log(p) + (1-y)*math.Log(1-p))
}

// Evaluate returns accuracy (threshold 0.5), logloss and auc of scores against
// labels. auc is left out when only one class is present.
func Evaluate(scores, y []float64) map[string]float64 {
	m := map[string]float64{}
	if len(scores) == 0 {
		return m
	}
	correct, loss := 0, 0.0
	for i, p := range scores {
		if (p >= 0.5) == (y[i] >= 0.5) {
			correct++
		}
		loss += logLoss(p, y[i])
	}
	m["accuracy"] = float64(correct) / float64(len(scores))
	m["logloss"] = loss / float64(len(scores))
	if auc, ok := AUC(scores, y); ok {
		m["auc"] = auc
	}
	return m
}

// AUC returns the area under the ROC curve (the Mann-Whitney statistic, ties
// counted half), and false when a class is missing.
func AUC(scores, y []float64) (float64, bool) {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	var pos, neg, rankSum float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		rank := float64(i+j+1) / 2 // average rank of the tie group, from 1
		for _, t := range idx[i:j] {
			if y[t] >= 0.5 {
				rankSum += rank
				pos++
			} else {
				neg++
			}
		}
		i = j
	}
	if pos == 0 || neg == 0 {
		return 0, false
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg), true
}
