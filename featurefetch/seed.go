package featurefetch

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Row is one feature-view row to write: entity values by join key, feature
// values by feature name (JSON as accepted by AppendValue), and its event time.
type Row struct {
	View      string                     `json:"view"`
	Entities  map[string]json.RawMessage `json:"entities"`
	Features  map[string]json.RawMessage `json:"features"`
	EventTime time.Time                  `json:"event_timestamp"`
}

// EncodeRow returns the Redis key of r's entity and the HSET field/value pairs
// writing r in Feast's layout ("_ts:<view>" first, then one field per feature
// present in r). project "" means the file's project.
func (v *Views) EncodeRow(project string, r *Row) (key string, fieldValues []string, err error) {
	if project == "" {
		project = v.Project
	}
	fv, ok := v.View(r.View)
	if !ok {
		return "", nil, fmt.Errorf("unknown feature view %q", r.View)
	}
	keys, vals := dummyJoinKeys, dummyEntity
	if len(fv.JoinKeys) > 0 {
		keys, vals = fv.JoinKeys, make([]EntityValue, len(fv.JoinKeys))
		for i, jk := range fv.JoinKeys {
			raw, ok := r.Entities[jk]
			if !ok {
				return "", nil, fmt.Errorf("view %q: missing entity %q", r.View, jk)
			}
			if vals[i], err = ParseEntityValue(fv.KeyTypes[i], raw); err != nil {
				return "", nil, fmt.Errorf("view %q: entity %q: %w", r.View, jk, err)
			}
		}
	}
	kb, err := AppendEntityKey(nil, project, keys, vals)
	if err != nil {
		return "", nil, fmt.Errorf("view %q: %w", r.View, err)
	}
	for jk := range r.Entities {
		if !slices.Contains(fv.JoinKeys, jk) {
			return "", nil, fmt.Errorf("view %q has no entity %q", r.View, jk)
		}
	}
	fieldValues = append(fieldValues, TimestampField(fv.Name), string(AppendTimestamp(nil, r.EventTime)))
	names := make([]string, 0, len(r.Features))
	for name := range r.Features {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f, ok := fv.Feature(name)
		if !ok {
			return "", nil, fmt.Errorf("view %q has no feature %q", r.View, name)
		}
		val, err := AppendValue(nil, f.Type, r.Features[name])
		if err != nil {
			return "", nil, fmt.Errorf("view %q: feature %q: %w", r.View, name, err)
		}
		fieldValues = append(fieldValues, FieldHash(fv.Name, name), string(val))
	}
	return string(kb), fieldValues, nil
}

// Seed writes JSON-lines rows (see Row; "event_timestamp" is RFC 3339 and
// defaults to the time of loading) to w and returns the number of rows written.
// Blank lines are skipped. project "" means the file's project.
func (v *Views) Seed(ctx context.Context, w RowWriter, project string, data []byte) (int, error) {
	now := time.Now().UTC()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	line, rows := 0, 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var r Row
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return rows, fmt.Errorf("seed line %d: %w", line, err)
		}
		if r.EventTime.IsZero() {
			r.EventTime = now
		}
		key, fields, err := v.EncodeRow(project, &r)
		if err != nil {
			return rows, fmt.Errorf("seed line %d: %w", line, err)
		}
		if err := w.HSet(ctx, key, fields...); err != nil {
			return rows, fmt.Errorf("seed line %d: %w", line, err)
		}
		rows++
	}
	if err := sc.Err(); err != nil {
		return rows, fmt.Errorf("cannot read seed data: %w", err)
	}
	return rows, nil
}

//go:embed demo/featureviews.yaml
var demoViews []byte

//go:embed demo/seed.jsonl
var demoSeed []byte

// DemoViews returns the bundled demo feature views (project lariat_demo:
// driver_stats and driver_trips keyed by INT64 driver_id, customer_profile
// keyed by STRING customer_id).
func DemoViews() (*Views, error) {
	return ParseViews("demo/featureviews.yaml", demoViews)
}

// DemoViewsYAML returns the bundled demo feature-view file.
func DemoViewsYAML() []byte {
	return slices.Clone(demoViews)
}

// DemoSeed returns the bundled demo rows (drivers 1001..1050, customers
// c1001..c1020) in Seed's JSON-lines format, without event times so they load
// as fresh.
func DemoSeed() []byte {
	return slices.Clone(demoSeed)
}

// NewDemoStore returns the demo views and a MemoryStore seeded with the demo rows.
func NewDemoStore() (*Views, *MemoryStore, error) {
	v, err := DemoViews()
	if err != nil {
		return nil, nil, fmt.Errorf("cannot parse demo views: %w", err)
	}
	s := NewMemoryStore()
	if _, err := v.Seed(context.Background(), s, "", demoSeed); err != nil {
		return nil, nil, fmt.Errorf("cannot seed demo store: %w", err)
	}
	return v, s, nil
}
