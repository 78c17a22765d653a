// Command trainer is the example training job: it reads a label file (an entity id
// column and a "label" column of 0/1), fetches the entities' features from the
// online store (Redis in Feast's layout) through featurefetch — or reads a
// training set of the feature values the gateway served (-dataset, written by
// lariat-train dataset) — fits a logistic regression by gradient descent, and writes the model (model.json) into the
// artifact directory and its metrics (accuracy, logloss, auc on a held-out
// quarter) into the metrics file.
//
// Every flag defaults to the variable the lariat-train sidecar sets:
//
//	trainer --labels labels.csv --views featureviews.yaml --redis 127.0.0.1:6379 \
//	    --feature-views driver_stats --artifact-dir out --lr 0.5 --epochs 300
//
//	trainer --dataset train.parquet --artifact-dir out --lr 0.5 --epochs 300
//
// LARIAT_DATASET, LARIAT_LABELS, LARIAT_VIEWS_FILE, LARIAT_ONLINE_STORE, LARIAT_FEATURE_VIEWS,
// LARIAT_FEATURES, LARIAT_ARTIFACT_DIR, LARIAT_METRICS_FILE, LARIAT_JOB_ID,
// LARIAT_HP_LR, LARIAT_HP_EPOCHS and LARIAT_HP_L2.
package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lariat-gw/lariat/examples/logreg"
	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/training/dataset"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "trainer: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	dataset                        string
	labels, views, redis, project  string
	featureViews, features         string
	artifactDir, metricsFile, name string
	jobID                          string
	lr, l2                         float64
	epochs, batch                  int
	timeout                        time.Duration
}

func parseFlags(args []string, env func(string) string) (*config, error) {
	fs := flag.NewFlagSet("trainer", flag.ContinueOnError)
	var c config
	envOr := func(k, def string) string {
		if v := env(k); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.dataset, "dataset", env("LARIAT_DATASET"), "Parquet training set from lariat-train dataset (feature values as served, a label column of 0/1); replaces -labels, -views and -redis")
	fs.StringVar(&c.labels, "labels", env("LARIAT_LABELS"), "CSV file: an entity id column (named as the join key) and a label column of 0/1")
	fs.StringVar(&c.views, "views", env("LARIAT_VIEWS_FILE"), "feature-view definitions file")
	fs.StringVar(&c.redis, "redis", env("LARIAT_ONLINE_STORE"), "online store: host:port or redis:// URL")
	fs.StringVar(&c.project, "project", "", "feature-store project (default: the views file's)")
	fs.StringVar(&c.featureViews, "feature-views", env("LARIAT_FEATURE_VIEWS"), "comma-separated views whose numeric features are read")
	fs.StringVar(&c.features, "features", env("LARIAT_FEATURES"), "comma-separated view:feature list (overrides -feature-views)")
	fs.StringVar(&c.artifactDir, "artifact-dir", env("LARIAT_ARTIFACT_DIR"), "directory the model is written to")
	fs.StringVar(&c.metricsFile, "metrics-file", env("LARIAT_METRICS_FILE"), "metrics JSON file (default <artifact-dir>/metrics.json)")
	fs.StringVar(&c.name, "model", envOr("LARIAT_JOB_NAME", "model"), "model name written in the artifact")
	fs.StringVar(&c.jobID, "job-id", env("LARIAT_JOB_ID"), "training job id written in the artifact")
	lr, err := strconv.ParseFloat(envOr("LARIAT_HP_LR", "0.1"), 64)
	if err != nil {
		return nil, fmt.Errorf("LARIAT_HP_LR: %w", err)
	}
	l2, err := strconv.ParseFloat(envOr("LARIAT_HP_L2", "0"), 64)
	if err != nil {
		return nil, fmt.Errorf("LARIAT_HP_L2: %w", err)
	}
	epochs, err := strconv.Atoi(envOr("LARIAT_HP_EPOCHS", "300"))
	if err != nil {
		return nil, fmt.Errorf("LARIAT_HP_EPOCHS: %w", err)
	}
	fs.Float64Var(&c.lr, "lr", lr, "learning rate")
	fs.Float64Var(&c.l2, "l2", l2, "L2 weight decay")
	fs.IntVar(&c.epochs, "epochs", epochs, "gradient-descent epochs")
	fs.IntVar(&c.batch, "batch", 256, "entities per feature read")
	fs.DurationVar(&c.timeout, "fetch-timeout", 10*time.Second, "limit on one feature read")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case c.dataset != "" && c.artifactDir == "":
		return nil, errors.New("-artifact-dir is required")
	case c.dataset != "":
	case c.labels == "" || c.views == "" || c.redis == "" || c.artifactDir == "":
		return nil, errors.New("-labels, -views, -redis and -artifact-dir are required (or -dataset and -artifact-dir)")
	case c.featureViews == "" && c.features == "":
		return nil, errors.New("-feature-views or -features is required")
	}
	if c.metricsFile == "" {
		c.metricsFile = filepath.Join(c.artifactDir, "metrics.json")
	}
	return &c, nil
}

func run(args []string, env func(string) string, stdout io.Writer) error {
	c, err := parseFlags(args, env)
	if err != nil {
		return err
	}
	start := time.Now()
	logf := func(format string, a ...any) {
		fmt.Fprintf(stdout, "%7.3fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	var (
		x            [][]float64
		y            []float64
		refs, names  []string
		entity       string
		loadFeatures = fromStore
	)
	if c.dataset != "" {
		loadFeatures = fromDataset
	}
	if x, y, refs, names, entity, err = loadFeatures(c, logf); err != nil {
		return err
	}

	// Hold out every fourth entity for evaluation.
	var trX, teX [][]float64
	var trY, teY []float64
	for i := range x {
		if i%4 == 3 && len(x) >= 8 {
			teX, teY = append(teX, x[i]), append(teY, y[i])
		} else {
			trX, trY = append(trX, x[i]), append(trY, y[i])
		}
	}
	if teX == nil {
		teX, teY = trX, trY
	}
	a := &logreg.Artifact{Name: c.name, Entity: entity, Features: names, FeatureRefs: refs, JobID: c.jobID,
		Hyperparameters: map[string]string{"lr": fmt.Sprint(c.lr), "epochs": strconv.Itoa(c.epochs), "l2": fmt.Sprint(c.l2)}}
	err = logreg.Train(a, trX, trY, logreg.TrainOptions{LearningRate: c.lr, Epochs: c.epochs, L2: c.l2,
		Progress: func(epoch int, loss float64) { logf("epoch %d/%d: train logloss %.4f", epoch, c.epochs, loss) }})
	if err != nil {
		return err
	}
	scores := make([]float64, len(teX))
	for i, row := range teX {
		scores[i] = a.Score(row)
	}
	a.Metrics = logreg.Evaluate(scores, teY)
	a.Metrics["train_rows"] = float64(len(trX))
	a.Metrics["test_rows"] = float64(len(teX))
	a.TrainedAt = time.Now().UTC()
	if err := a.Save(c.artifactDir); err != nil {
		return err
	}
	mb, _ := json.Marshal(a.Metrics)
	if err := os.MkdirAll(filepath.Dir(c.metricsFile), 0o755); err != nil {
		return fmt.Errorf("cannot create the metrics directory: %w", err)
	}
	if err := os.WriteFile(c.metricsFile, mb, 0o644); err != nil {
		return fmt.Errorf("cannot write metrics: %w", err)
	}
	logf("wrote %s; metrics %s", filepath.Join(c.artifactDir, logreg.ArtifactFile), mb)
	return nil
}

// fromStore reads the labels and the entities' features from the online store.
func fromStore(c *config, logf func(string, ...any)) (x [][]float64, y []float64, refs, names []string, entity string, err error) {
	views, err := featurefetch.LoadViews(c.views)
	if err != nil {
		return nil, nil, nil, nil, "", err
	}
	refs, names, err = numericFeatures(views, c.features, c.featureViews)
	if err != nil {
		return nil, nil, nil, nil, "", err
	}
	plan, err := views.NewPlan(c.project, refs, featurefetch.PlanOptions{Shape: featurefetch.ShapeRows})
	if err != nil {
		return nil, nil, nil, nil, "", fmt.Errorf("cannot plan the feature read: %w", err)
	}
	if len(plan.JoinKeys()) != 1 {
		return nil, nil, nil, nil, "", fmt.Errorf("the features need join keys %v; this trainer handles one", plan.JoinKeys())
	}
	entity = plan.JoinKeys()[0]
	ids, y, err := readLabels(c.labels, entity)
	if err != nil {
		return nil, nil, nil, nil, "", err
	}
	logf("read %d labels of %s from %s", len(ids), entity, c.labels)

	store, err := openStore(c.redis)
	if err != nil {
		return nil, nil, nil, nil, "", err
	}
	defer store.Close()
	x, missing, err := fetch(plan, store, ids, names, c.batch, c.timeout)
	if err != nil {
		return nil, nil, nil, nil, "", err
	}
	logf("read %d features of %d entities (%d values missing)", len(names), len(ids), missing)
	return x, y, refs, names, entity, nil
}

// fromDataset reads a training set of served feature values: the listed
// features (-features view:feature,...) or every numeric one, and the
// label column.
func fromDataset(c *config, logf func(string, ...any)) (x [][]float64, y []float64, refs, names []string, entity string, err error) {
	var want []string
	if c.features != "" {
		for _, f := range strings.Split(c.features, ",") {
			_, name, ok := strings.Cut(strings.TrimSpace(f), ":")
			if !ok {
				return nil, nil, nil, nil, "", fmt.Errorf("feature %q is not view:feature", f)
			}
			want = append(want, name)
		}
	}
	d, err := dataset.Read(c.dataset, "label", want)
	if err != nil {
		return nil, nil, nil, nil, "", err
	}
	for i, l := range d.Y {
		if l != 0 && l != 1 {
			return nil, nil, nil, nil, "", fmt.Errorf("dataset %s: row %d: label %v is not 0 or 1", c.dataset, i+1, l)
		}
	}
	if len(d.Y) == 0 {
		return nil, nil, nil, nil, "", fmt.Errorf("dataset %s: no labelled rows", c.dataset)
	}
	if len(d.EntityKeys) == 1 {
		entity = d.EntityKeys[0]
	}
	logf("read %d rows of %d features (as served) from %s", len(d.X), len(d.Features), c.dataset)
	return d.X, d.Y, d.Refs, d.Features, entity, nil
}

// numericFeatures returns the "view:feature" references to read and their names:
// the listed features, or every numeric feature of the listed views.
func numericFeatures(views *featurefetch.Views, features, viewList string) (refs, names []string, err error) {
	if features != "" {
		for _, f := range strings.Split(features, ",") {
			f = strings.TrimSpace(f)
			view, name, ok := strings.Cut(f, ":")
			if !ok {
				return nil, nil, fmt.Errorf("feature %q is not view:feature", f)
			}
			fv, ok := views.View(view)
			if !ok {
				return nil, nil, fmt.Errorf("unknown feature view %q", view)
			}
			ft, ok := fv.Feature(name)
			if !ok {
				return nil, nil, fmt.Errorf("view %q has no feature %q", view, name)
			}
			if !numeric(ft.Type) {
				return nil, nil, fmt.Errorf("feature %s is %s, not numeric", f, ft.Type)
			}
			refs, names = append(refs, f), append(names, name)
		}
		return refs, names, nil
	}
	for _, view := range strings.Split(viewList, ",") {
		fv, ok := views.View(strings.TrimSpace(view))
		if !ok {
			return nil, nil, fmt.Errorf("unknown feature view %q", view)
		}
		for _, ft := range fv.Features {
			if numeric(ft.Type) {
				refs, names = append(refs, fv.Name+":"+ft.Name), append(names, ft.Name)
			}
		}
	}
	if len(refs) == 0 {
		return nil, nil, fmt.Errorf("views %s have no numeric features", viewList)
	}
	return refs, names, nil
}

func numeric(t featurefetch.ValueType) bool {
	switch t {
	case featurefetch.TypeInt32, featurefetch.TypeInt64, featurefetch.TypeFloat, featurefetch.TypeDouble, featurefetch.TypeBool:
		return true
	}
	return false
}

// readLabels reads the entity column and the label column of a CSV file.
func readLabels(path, entity string) ([]string, []float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read labels: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("labels %s: cannot read the header: %w", path, err)
	}
	ei, li := -1, -1
	for i, h := range header {
		switch strings.TrimSpace(h) {
		case entity:
			ei = i
		case "label":
			li = i
		}
	}
	if ei < 0 || li < 0 {
		return nil, nil, fmt.Errorf("labels %s: want columns %q and \"label\", got %q", path, entity, header)
	}
	var ids []string
	var y []float64
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("labels %s: %w", path, err)
		}
		l, err := strconv.ParseFloat(strings.TrimSpace(rec[li]), 64)
		if err != nil || (l != 0 && l != 1) {
			return nil, nil, fmt.Errorf("labels %s:%d: label %q is not 0 or 1", path, line, rec[li])
		}
		ids = append(ids, strings.TrimSpace(rec[ei]))
		y = append(y, l)
	}
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("labels %s: no rows", path)
	}
	return ids, y, nil
}

func openStore(addr string) (*featurefetch.RedisStore, error) {
	var opt featurefetch.RedisOptions
	if strings.Contains(addr, "://") {
		var err error
		if opt, err = featurefetch.ParseRedisURL(addr); err != nil {
			return nil, err
		}
	} else {
		opt.Addrs = []string{addr}
	}
	opt.DisableCache = true
	opt.ClientName = "lariat-example-trainer"
	return featurefetch.NewRedisStore(opt)
}

// fetch reads the features of the entities in batches and returns one row per
// entity (NaN for a missing value) and the count of missing values.
func fetch(plan *featurefetch.Plan, store featurefetch.Store, ids []string, names []string, batch int, timeout time.Duration) ([][]float64, int, error) {
	x := make([][]float64, 0, len(ids))
	missing := 0
	var out []byte
	for start := 0; start < len(ids); start += batch {
		end := min(start+batch, len(ids))
		keys, _ := json.Marshal(ids[start:end])
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		var err error
		out, err = plan.Fetch(ctx, store, [][]byte{keys}, out[:0])
		cancel()
		if err != nil {
			return nil, 0, fmt.Errorf("cannot read features: %w", err)
		}
		var rows []map[string]any
		if err := json.Unmarshal(out, &rows); err != nil {
			return nil, 0, fmt.Errorf("cannot decode features: %w", err)
		}
		for _, r := range rows {
			row := make([]float64, len(names))
			for j, n := range names {
				switch v := r[n].(type) {
				case float64:
					row[j] = v
				case bool:
					if v {
						row[j] = 1
					}
				default:
					row[j] = math.NaN()
					missing++
				}
			}
			x = append(x, row)
		}
	}
	return x, missing, nil
}
