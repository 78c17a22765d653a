package featurefetch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/yamlstrict"
)

func loadTestViews(t testing.TB) *Views {
	t.Helper()
	v, err := LoadViews("testdata/featureviews.yaml")
	if err != nil {
		t.Fatalf("LoadViews: %v", err)
	}
	return v
}

func TestLoadViews(t *testing.T) {
	v := loadTestViews(t)
	if v.Project != "lariat_test" {
		t.Fatalf("project %q", v.Project)
	}
	ds, ok := v.View("driver_stats")
	if !ok {
		t.Fatal("driver_stats missing")
	}
	if ds.TTL != 24*time.Hour || ds.TimestampField != "event_timestamp" || len(ds.Features) != 6 {
		t.Fatalf("driver_stats = %+v", ds)
	}
	if f, ok := ds.Feature("avg_daily_trips"); !ok || f.Type != TypeInt64 {
		t.Fatalf("avg_daily_trips = %+v", f)
	}
	dc, _ := v.View("driver_customer")
	if strings.Join(dc.JoinKeys, ",") != "customer_id,driver_id" || dc.KeyTypes[0] != TypeString || dc.KeyTypes[1] != TypeInt64 {
		t.Fatalf("driver_customer keys %v %v", dc.JoinKeys, dc.KeyTypes)
	}
	gs, _ := v.View("global_stats")
	if len(gs.JoinKeys) != 0 {
		t.Fatalf("global_stats keys %v", gs.JoinKeys)
	}
	if e, ok := v.Entity("device_id"); !ok || e.Type != TypeBytes {
		t.Fatalf("device_id = %+v", e)
	}
	if _, err := DemoViews(); err != nil {
		t.Fatalf("demo views: %v", err)
	}
}

func TestLoadViewsMissingFile(t *testing.T) {
	_, err := LoadViews(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

func TestParseViewsErrors(t *testing.T) {
	f := func(doc, want string) {
		t.Helper()
		_, err := ParseViews("views.yaml", []byte(doc))
		if err == nil {
			t.Fatalf("no error for:\n%s", doc)
		}
		if err.Error() != want {
			t.Errorf("error\n got %s\nwant %s", err, want)
		}
	}
	const ents = "project: p\nentities:\n  - {name: d, value_type: INT64}\n"
	f("", "views.yaml:1:1: the file is empty; want a feature view file")
	f("- a\n", "views.yaml:1:1: a feature view file must be a mapping, got a list")
	f("entities: []\n", `views.yaml:1:1: missing required key "project"`)
	f("project: p\nextra: 1\n", `views.yaml:2:1: unknown key "extra" (allowed: entities, feature_views, project)`)
	f("project: p\nproject: q\n", `views.yaml:2:1: duplicate key "project"`)
	f("project: a:b\n", `views.yaml:1:10: project "a:b" must not contain ':' or whitespace`)
	f("project: p\nentities:\n  - {name: d, value_type: FLOAT}\n",
		"views.yaml:3:27: entity value_type FLOAT is not allowed in entity keys; use STRING, BYTES, INT32 or INT64")
	f("project: p\nentities:\n  - {name: d, value_type: LONG}\n",
		`views.yaml:3:27: unknown value type "LONG"; want one of BYTES, STRING, INT32, INT64, DOUBLE, FLOAT, BOOL, UNIX_TIMESTAMP or one of them with a _LIST suffix`)
	f("project: p\nentities:\n  - {name: d}\n", `views.yaml:3:5: entity "d" is missing required key "value_type"`)
	f(ents+"  - {name: d, value_type: STRING}\n", `views.yaml:4:5: duplicate entity "d"`)
	f(ents+"feature_views:\n  - name: v\n    entities: [x]\n    features: [{name: a, dtype: INT64}]\n",
		`views.yaml:6:16: unknown entity "x"`)
	f(ents+"feature_views:\n  - name: v\n    entities: [d]\n    features: []\n",
		`views.yaml:7:15: feature view "v" has no features`)
	f(ents+"feature_views:\n  - name: v\n    features:\n      - {name: a, dtype: INT64, size: 3}\n",
		`views.yaml:7:33: unknown key "size" for "feature_views[0].features[0]" (allowed: description, dtype, name)`)
	f(ents+"feature_views:\n  - name: v\n    features:\n      - {name: a, dtype: INT64}\n      - {name: a, dtype: FLOAT}\n",
		`views.yaml:8:9: duplicate feature "a"`)
	f(ents+"feature_views:\n  - name: v\n    ttl: soon\n    features: [{name: a, dtype: INT64}]\n",
		`views.yaml:6:10: ttl: invalid duration "soon": use a number of seconds or a unit (90m, 2h)`)
	f(ents+"feature_views:\n  - name: v\n    ttl: -1h\n    features: [{name: a, dtype: INT64}]\n",
		`views.yaml:6:10: ttl: duration "-1h" is negative`)
	f(ents+"feature_views:\n  - {name: v, features: [{name: a, dtype: INT64}]}\n  - {name: v, features: [{name: b, dtype: INT64}]}\n",
		`views.yaml:6:5: duplicate feature view "v"`)
	f(ents+"feature_views:\n  - features: [{name: a, dtype: INT64}]\n",
		`views.yaml:5:5: feature view is missing required key "name"`)
	f(ents+"feature_views:\n  - {name: v, features: [{name: a}]}\n",
		`views.yaml:5:26: feature "a" is missing required key "dtype"`)
	f(ents+"feature_views: {}\n", `views.yaml:4:16: expected a list for "feature_views", got a mapping`)
	f("project: [p]\n", `views.yaml:1:10: expected a string for "project", got a list`)

	_, err := ParseViews("x.yaml", []byte("project: p\n  bad: indent\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "x.yaml:2:1: invalid YAML: ") {
		t.Fatalf("syntax error: %v", err)
	}
	var ce *yamlstrict.Error
	_, err = ParseViews("x.yaml", []byte("project: p\nx: 1\n"))
	if !errors.As(err, &ce) || ce.Pos.Line != 2 || ce.Pos.Col != 1 || ce.Path != "x" {
		t.Fatalf("yamlstrict.Error: %#v", err)
	}
}

func TestParseViewsAcceptsVariants(t *testing.T) {
	doc := `
feature_views:   # views before entities still resolve
  - name: v
    entities: [d]
    ttl: 3600
    features:
      - &feat {name: a, dtype: INT64_LIST, description: "x"}
entities:
  - {name: d, value_type: INT32, description: "y"}
project: p
`
	v, err := ParseViews("v.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	fv, _ := v.View("v")
	if fv.TTL != time.Hour || fv.TimestampField != "event_timestamp" || fv.KeyTypes[0] != TypeInt32 {
		t.Fatalf("%+v", fv)
	}
}

func TestParseViewsNullScalars(t *testing.T) {
	v, err := ParseViews("n.yaml", []byte("project: p\nentities: [{name: d, value_type: INT64, description: }]\n"))
	if err != nil || v.Entities[0].Description != "" {
		t.Fatalf("null description: %v", err)
	}
	_, err = ParseViews("n.yaml", []byte("project:\n"))
	if err == nil || err.Error() != "n.yaml:1:9: project must not be empty" {
		t.Fatalf("null project: %v", err)
	}
}

func TestParseViewsCollectsErrors(t *testing.T) {
	doc := "project: p\nentities:\n  - {name: d, value_type: LONG}\n  - {name: 'a b', value_type: INT64}\n" +
		"feature_views:\n  - {name: v, entities: [d], features: [{name: a}]}\n  - {name: w, features: [{name: b, dtype: INT64, size: 1}]}\n"
	_, err := ParseViews("v.yaml", []byte(doc))
	want := `v.yaml:7:50: unknown key "size" for "feature_views[1].features[0]" (allowed: description, dtype, name)`
	if err == nil || err.Error() != want {
		t.Fatalf("decoding errors come alone:\n got %v\nwant %s", err, want)
	}
	doc = strings.Replace(doc, ", size: 1", "", 1)
	_, err = ParseViews("v.yaml", []byte(doc))
	want = `v.yaml:3:27: unknown value type "LONG"; want one of BYTES, STRING, INT32, INT64, DOUBLE, FLOAT, BOOL, UNIX_TIMESTAMP or one of them with a _LIST suffix
v.yaml:4:12: entity name "a b" must not contain ':' or whitespace
v.yaml:6:26: unknown entity "d"
v.yaml:6:41: feature "a" is missing required key "dtype"`
	if err == nil || err.Error() != want {
		t.Fatalf("every problem of the file:\n got %v\nwant %s", err, want)
	}
}
