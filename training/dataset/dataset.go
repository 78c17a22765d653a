// Package dataset builds training sets from what the gateway served: it
// joins outcome labels to the feature values a prediction log recorded,
// so a model is trained on the values it will see in production.
package dataset

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/predlog/sink"
)

// Options say how to build a training set from a prediction log.
type Options struct {
	// Predictions is a prediction log folder (file:// sink) or one file.
	Predictions string
	// Labels is a CSV file with a header row: the join column, the
	// labels, and optionally entity join keys (such as driver_id) that
	// pick one entity of a request that served several.
	Labels string
	// On names the join column, in the labels and as the record's
	// request id (default request_id).
	On string
	// Out is the Parquet file written.
	Out string
	// Route keeps only records of this route (default: all).
	Route string
}

// Stats says what Build did.
type Stats struct {
	// Labels is the number of label rows; Matched those whose request
	// was found; Rows the rows written (one per label and entity).
	Labels, Matched, Rows int
	// Unmatched lists up to 10 join values with no record.
	Unmatched []string `json:",omitempty"`
	// Features, EntityKeys and LabelColumns name the columns written.
	Features, EntityKeys, LabelColumns []string
}

// Key-value metadata of a dataset file.
const (
	// FeaturesKey lists the feature columns, comma-separated.
	FeaturesKey = "lariat.features"
	// FeatureRefsKey lists their "view:feature" references.
	FeatureRefsKey = "lariat.feature_refs"
	// EntityKeysKey lists the entity join keys of the records.
	EntityKeysKey = "lariat.entity_keys"
)

// servedEntity is one entity of a record: its join keys and the values
// served to it.
type servedEntity struct {
	keys   map[string]string
	values map[string]gjson.Result // by "view:feature"
}

type servedRecord struct {
	rec      predlog.Record // without features
	entities []servedEntity
}

// Build joins outcome labels to the exact feature values the
// gateway served, as the prediction log recorded them, and writes one
// Parquet row per label and entity: the join column, time, route,
// route_version, one arm__<gate> column per gate, one model__<task>
// column per model task (name=version), the entity keys, one column per
// feature (double when every value is a number or boolean, else string),
// one output__<field> column per logged output, and the label columns
// (double when numeric). When the labels have a column named as an
// entity join key, only the matching entity of a request is used;
// otherwise every entity of the request gets the label.
func Build(o Options) (*Stats, error) {
	if o.On == "" {
		o.On = "request_id"
	}
	header, rows, err := ReadLabels(o.Labels)
	if err != nil {
		return nil, err
	}
	on := slices.Index(header, o.On)
	if on < 0 {
		return nil, fmt.Errorf("labels %s: no %q column (columns: %s)", o.Labels, o.On, strings.Join(header, ", "))
	}
	wanted := make(map[string]bool, len(rows))
	for _, r := range rows {
		wanted[r[on]] = true
	}
	st := &Stats{Labels: len(rows)}

	served := map[string]*servedRecord{}
	refNames := map[string]string{} // "view:feature" -> column name
	var refs []string
	byName := map[string][]string{}
	joinKeys := map[string]bool{}
	var gates, models, outputs []string
	err = sink.Read(o.Predictions, func(r *predlog.Record) error {
		if !wanted[r.RequestID] || served[r.RequestID] != nil || (o.Route != "" && r.Route != o.Route) {
			return nil
		}
		sr := &servedRecord{rec: *r}
		sr.rec.Features = nil
		sr.rec.Arms = slices.Clone(r.Arms)
		sr.rec.Tasks = slices.Clone(r.Tasks)
		sr.rec.Outputs = slices.Clone(r.Outputs)
		entIdx := map[string]int{}
		for _, f := range r.Features {
			k, ok := entIdx[string(f.Entity)]
			if !ok {
				k = len(sr.entities)
				entIdx[string(f.Entity)] = k
				e := servedEntity{keys: map[string]string{}, values: map[string]gjson.Result{}}
				gjson.Parse(string(f.Entity)).ForEach(func(key, v gjson.Result) bool {
					e.keys[key.String()] = v.String()
					joinKeys[key.String()] = true
					return true
				})
				sr.entities = append(sr.entities, e)
			}
			ref := f.View + ":" + f.Name
			sr.entities[k].values[ref] = gjson.Parse(string(f.Value))
			if _, ok := refNames[ref]; !ok {
				refNames[ref] = f.Name
				refs = append(refs, ref)
				byName[f.Name] = append(byName[f.Name], ref)
			}
		}
		for _, a := range r.Arms {
			if !slices.Contains(gates, a.Gate) {
				gates = append(gates, a.Gate)
			}
		}
		for _, t := range r.Tasks {
			if t.Model != "" && !slices.Contains(models, t.Name) {
				models = append(models, t.Name)
			}
		}
		for _, out := range r.Outputs {
			if !slices.Contains(outputs, out.Path) {
				outputs = append(outputs, out.Path)
			}
		}
		served[r.RequestID] = sr
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Features of the same name in two views are named view__feature.
	for name, rs := range byName {
		if len(rs) > 1 {
			for _, ref := range rs {
				view, _, _ := strings.Cut(ref, ":")
				refNames[ref] = view + "__" + name
			}
		}
	}
	// Label columns named as entity join keys select the entity.
	var entityCols []int
	for i, h := range header {
		if i != on && joinKeys[h] {
			entityCols = append(entityCols, i)
		}
	}
	var keyNames, allKeys []string
	for k := range joinKeys {
		allKeys = append(allKeys, k)
		if !slices.Contains(header, k) {
			keyNames = append(keyNames, k)
		}
	}
	slices.Sort(keyNames)
	slices.Sort(allKeys)

	type outRow struct {
		label  []string
		rec    *servedRecord
		entity *servedEntity
	}
	var out []outRow
	for _, lr := range rows {
		sr := served[lr[on]]
		if sr == nil {
			if len(st.Unmatched) < 10 {
				st.Unmatched = append(st.Unmatched, lr[on])
			}
			continue
		}
		st.Matched++
		if len(sr.entities) == 0 {
			out = append(out, outRow{label: lr, rec: sr})
			continue
		}
		for k := range sr.entities {
			e := &sr.entities[k]
			match := true
			for _, c := range entityCols {
				if v, ok := e.keys[header[c]]; !ok || v != lr[c] {
					match = false
				}
			}
			if match {
				out = append(out, outRow{label: lr, rec: sr, entity: e})
			}
		}
	}

	// Column types: double when every value is numeric.
	numericFeature := map[string]bool{}
	for _, ref := range refs {
		numericFeature[ref] = true
		for _, r := range out {
			if r.entity == nil {
				continue
			}
			if v, ok := r.entity.values[ref]; ok && !isNumeric(v) {
				numericFeature[ref] = false
			}
		}
	}
	numericLabel := make([]bool, len(header))
	for i := range header {
		numericLabel[i] = i != on && !slices.Contains(entityCols, i)
		for _, lr := range rows {
			if _, err := strconv.ParseFloat(strings.TrimSpace(lr[i]), 64); err != nil && lr[i] != "" {
				numericLabel[i] = false
			}
		}
	}
	outputValue := func(sr *servedRecord, path string) (gjson.Result, bool) {
		for _, o := range sr.rec.Outputs {
			if o.Path == path {
				return gjson.Parse(string(o.Value)), true
			}
		}
		return gjson.Result{}, false
	}
	numericOutput := map[string]bool{}
	for _, p := range outputs {
		numericOutput[p] = true
		for _, r := range out {
			if v, ok := outputValue(r.rec, p); ok && !isNumeric(v) {
				numericOutput[p] = false
			}
		}
	}

	str := parquet.Optional(parquet.String())
	dbl := parquet.Optional(parquet.Leaf(parquet.DoubleType))
	group := parquet.Group{
		o.On:            parquet.String(),
		"time":          parquet.String(),
		"route":         parquet.String(),
		"route_version": parquet.String(),
	}
	for _, g := range gates {
		group["arm__"+g] = str
	}
	for _, m := range models {
		group["model__"+m] = str
	}
	for _, k := range keyNames {
		group[k] = str
	}
	for i, h := range header {
		if i == on {
			continue
		}
		if _, dup := group[h]; dup && !slices.Contains(keyNames, h) {
			return nil, fmt.Errorf("labels %s: column %q is a column the dataset writes itself; rename it", o.Labels, h)
		}
		if numericLabel[i] {
			group[h] = dbl
		} else {
			group[h] = str
		}
	}
	outName := func(p string) string {
		return "output__" + strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(p, "response."), "body."), ".", "_")
	}
	for _, p := range outputs {
		if numericOutput[p] {
			group[outName(p)] = dbl
		} else {
			group[outName(p)] = str
		}
	}
	for _, ref := range refs {
		name := refNames[ref]
		if _, dup := group[name]; dup {
			return nil, fmt.Errorf("feature %s: its column %q is also a label or key column; rename the label column", ref, name)
		}
		if numericFeature[ref] {
			group[name] = dbl
		} else {
			group[name] = str
		}
	}

	var featCols []string
	for _, ref := range refs {
		featCols = append(featCols, refNames[ref])
	}
	st.Features, st.EntityKeys = featCols, keyNames
	for i, h := range header {
		if i != on {
			st.LabelColumns = append(st.LabelColumns, h)
		}
	}

	if err := os.MkdirAll(filepath.Dir(o.Out), 0o755); err != nil {
		return nil, fmt.Errorf("cannot create the output folder: %w", err)
	}
	tmp := o.Out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("cannot write dataset: %w", err)
	}
	defer os.Remove(tmp)
	defer f.Close()
	w := parquet.NewGenericWriter[map[string]any](f, parquet.NewSchema("dataset", group),
		parquet.Compression(&snappy.Codec{}),
		parquet.KeyValueMetadata(FeaturesKey, strings.Join(featCols, ",")),
		parquet.KeyValueMetadata(FeatureRefsKey, strings.Join(refs, ",")),
		parquet.KeyValueMetadata(EntityKeysKey, strings.Join(allKeys, ",")),
	)
	batch := make([]map[string]any, 0, 256)
	flush := func() error {
		if _, err := w.Write(batch); err != nil {
			return fmt.Errorf("cannot write dataset: %w", err)
		}
		batch = batch[:0]
		return nil
	}
	for _, r := range out {
		row := map[string]any{
			o.On:            r.rec.rec.RequestID,
			"time":          r.rec.rec.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
			"route":         r.rec.rec.Route,
			"route_version": r.rec.rec.RouteVersion,
		}
		for _, g := range gates {
			row["arm__"+g] = nil
		}
		for _, a := range r.rec.rec.Arms {
			row["arm__"+a.Gate] = &a.Arm
		}
		for _, m := range models {
			row["model__"+m] = nil
		}
		for _, t := range r.rec.rec.Tasks {
			if t.Model != "" {
				row["model__"+t.Name] = ptr(t.Model + "=" + t.Version)
			}
		}
		for _, k := range keyNames {
			row[k] = nil
			if r.entity != nil {
				if v, ok := r.entity.keys[k]; ok {
					row[k] = &v
				}
			}
		}
		for i, h := range header {
			switch {
			case i == on:
			case numericLabel[i]:
				if v, err := strconv.ParseFloat(strings.TrimSpace(r.label[i]), 64); err == nil {
					row[h] = &v
				} else {
					row[h] = nil
				}
			default:
				row[h] = &r.label[i]
			}
		}
		for _, p := range outputs {
			row[outName(p)] = nil
			if v, ok := outputValue(r.rec, p); ok {
				row[outName(p)] = cell(v, numericOutput[p])
			}
		}
		for _, ref := range refs {
			name := refNames[ref]
			row[name] = nil
			if r.entity != nil {
				if v, ok := r.entity.values[ref]; ok {
					row[name] = cell(v, numericFeature[ref])
				}
			}
		}
		batch = append(batch, row)
		st.Rows++
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("cannot write dataset: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("cannot write dataset: %w", err)
	}
	if err := os.Rename(tmp, o.Out); err != nil {
		return nil, fmt.Errorf("cannot write dataset: %w", err)
	}
	return st, nil
}

func isNumeric(v gjson.Result) bool {
	return v.Type == gjson.Number || v.Type == gjson.True || v.Type == gjson.False || v.Type == gjson.Null
}

// cell converts a served JSON value for a column: a float for numeric
// columns (booleans as 0 and 1), else the text (strings unquoted, other
// values as JSON); nil for null. Values are pointers: for optional
// columns the Parquet writer takes a zero value for null.
func cell(v gjson.Result, numeric bool) any {
	switch {
	case v.Type == gjson.Null || !v.Exists():
		return nil
	case numeric && v.Type == gjson.True:
		return ptr(1.0)
	case numeric && v.Type == gjson.False:
		return ptr(0.0)
	case numeric:
		return ptr(v.Float())
	case v.Type == gjson.String:
		return ptr(v.Str)
	}
	return ptr(v.Raw)
}

func ptr[T any](v T) *T { return &v }

// ReadLabels reads a CSV file with a header row, trimming spaces.
func ReadLabels(path string) ([]string, [][]string, error) {
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
	for i := range header {
		header[i] = strings.TrimSpace(header[i])
	}
	var rows [][]string
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("labels %s: %w", path, err)
		}
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		rows = append(rows, rec)
	}
	return header, rows, nil
}

// Data is the numeric part of a dataset: one row of features and a label
// per label and entity.
type Data struct {
	X [][]float64
	Y []float64
	// Features names the columns of X; Refs their "view:feature".
	Features, Refs []string
	// EntityKeys are the entity join keys of the records.
	EntityKeys []string
}

// Read reads a dataset file written by Build: the label column and the
// features named (by default every numeric feature column), skipping
// rows without a label. NaN marks a missing feature value.
func Read(path, label string, features []string) (*Data, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read dataset: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read dataset: %w", err)
	}
	pf, err := parquet.OpenFile(f, info.Size())
	if err != nil {
		return nil, fmt.Errorf("cannot read dataset %s: %w", path, err)
	}
	list := func(key string) []string {
		v, _ := pf.Lookup(key)
		if v == "" {
			return nil
		}
		return strings.Split(v, ",")
	}
	allNames, allRefs := list(FeaturesKey), list(FeatureRefsKey)
	numeric := func(n string) (bool, error) {
		col, ok := pf.Schema().Lookup(n)
		if !ok {
			return false, fmt.Errorf("dataset %s has no column %q", path, n)
		}
		return col.Node.Type().Kind() == parquet.Double, nil
	}
	d := &Data{EntityKeys: list(EntityKeysKey)}
	if len(features) == 0 {
		for i, n := range allNames {
			if ok, err := numeric(n); err != nil {
				return nil, err
			} else if ok {
				d.Features = append(d.Features, n)
				if i < len(allRefs) {
					d.Refs = append(d.Refs, allRefs[i])
				}
			}
		}
	} else {
		for _, n := range features {
			if ok, err := numeric(n); err != nil {
				return nil, err
			} else if !ok {
				return nil, fmt.Errorf("dataset %s: column %q is not numeric", path, n)
			}
			d.Features = append(d.Features, n)
			if i := slices.Index(allNames, n); i >= 0 && i < len(allRefs) {
				d.Refs = append(d.Refs, allRefs[i])
			}
		}
	}
	if len(d.Features) == 0 {
		return nil, fmt.Errorf("dataset %s has no numeric feature column", path)
	}
	if ok, err := numeric(label); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("dataset %s: label column %q is not numeric", path, label)
	}
	rd := parquet.NewGenericReader[map[string]any](pf, pf.Schema())
	defer rd.Close()
	buf := make([]map[string]any, 128)
	for {
		for i := range buf {
			buf[i] = map[string]any{}
		}
		n, rerr := rd.Read(buf)
		for _, row := range buf[:n] {
			lv, ok := row[label].(float64)
			if !ok {
				continue
			}
			xs := make([]float64, len(d.Features))
			for j, name := range d.Features {
				if v, ok := row[name].(float64); ok {
					xs[j] = v
				} else {
					xs[j] = math.NaN()
				}
			}
			d.X, d.Y = append(d.X, xs), append(d.Y, lv)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("cannot read dataset %s: %w", path, rerr)
		}
	}
	return d, nil
}
