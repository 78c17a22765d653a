package featurefetch

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lariat-gw/lariat/internal/yamlstrict"
)

// Views holds the feature-view definitions of one project, loaded from a YAML
// file shared by the gateway, the ingestion sidecar and validation.
//
// A Views is immutable after loading and safe for concurrent use.
//
// Example file:
//
//	project: lariat_demo
//	entities:
//	  - name: driver_id        # the join key
//	    value_type: INT64      # STRING, BYTES, INT32 or INT64
//	feature_views:
//	  - name: driver_stats
//	    entities: [driver_id]  # empty for an entityless view
//	    ttl: 24h               # max age of a row; 0 or absent = no limit
//	    timestamp_field: event_timestamp   # column holding the event time, for ingestion
//	    features:
//	      - name: conv_rate
//	        dtype: FLOAT
type Views struct {
	// Project is the Feast project name; it is part of every Redis key.
	Project string
	// Entities in file order.
	Entities []*Entity
	// FeatureViews in file order.
	FeatureViews []*View

	entities map[string]*Entity
	views    map[string]*View

	plansMu sync.RWMutex
	plans   map[string]*Plan
}

// Entity is an entity; its name is its join key.
type Entity struct {
	Name        string
	Type        ValueType
	Description string
}

// View is a feature view.
type View struct {
	Name string
	// JoinKeys are the view's entity join keys, sorted. Empty for an entityless view.
	JoinKeys []string
	// KeyTypes are the value types of JoinKeys, in the same order.
	KeyTypes []ValueType
	Features []*Feature
	// TTL is the view's max age; rows older than it are OUTSIDE_MAX_AGE. 0 = no limit.
	TTL time.Duration
	// TimestampField names the event-time column for ingestion. Empty means
	// "event_timestamp".
	TimestampField string
	Description    string

	features map[string]*Feature
}

// Feature is one feature of a view.
type Feature struct {
	Name        string
	Type        ValueType
	Description string
}

// DummyJoinKey and DummyEntityValue form the key of entityless views, as in Feast.
const (
	DummyJoinKey     = "__dummy_id"
	DummyEntityValue = ""
)

// Entity returns the entity named name.
func (v *Views) Entity(name string) (*Entity, bool) {
	e, ok := v.entities[name]
	return e, ok
}

// View returns the feature view named name.
func (v *Views) View(name string) (*View, bool) {
	fv, ok := v.views[name]
	return fv, ok
}

// Feature returns the view's feature named name.
func (fv *View) Feature(name string) (*Feature, bool) {
	f, ok := fv.features[name]
	return f, ok
}

// LoadViews reads and validates the feature-view file at path.
func LoadViews(path string) (*Views, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read feature views: %w", err)
	}
	return ParseViews(path, data)
}

// The file as written; ParseViews decodes it strictly, then checks it.
type (
	viewsDoc struct {
		Project      yamlstrict.String `yaml:"project"`
		Entities     []entityDoc       `yaml:"entities"`
		FeatureViews []viewDoc         `yaml:"feature_views"`
	}
	entityDoc struct {
		Pos         yamlstrict.Pos    `yaml:",pos"`
		Name        yamlstrict.String `yaml:"name"`
		ValueType   yamlstrict.String `yaml:"value_type"`
		Description string            `yaml:"description"`
	}
	viewDoc struct {
		Pos            yamlstrict.Pos      `yaml:",pos"`
		Name           yamlstrict.String   `yaml:"name"`
		Entities       []yamlstrict.String `yaml:"entities"`
		Features       []featureDoc        `yaml:"features"`
		FeaturesPos    yamlstrict.Pos      `yaml:"features,pos"`
		TTL            ttl                 `yaml:"ttl"`
		TimestampField string              `yaml:"timestamp_field"`
		Description    string              `yaml:"description"`
	}
	featureDoc struct {
		Pos         yamlstrict.Pos    `yaml:",pos"`
		Name        yamlstrict.String `yaml:"name"`
		DType       yamlstrict.String `yaml:"dtype"`
		Description string            `yaml:"description"`
	}
)

// ttl is a view's max age: a Go duration string ("24h", "90m") or a whole
// number of seconds.
type ttl time.Duration

// UnmarshalNode implements yamlstrict.Unmarshaler.
func (t *ttl) UnmarshalNode(file string, n *yaml.Node) error {
	pos := yamlstrict.PosOf(file, n)
	if n.Kind != yaml.ScalarNode {
		return yamlstrict.Errorf(pos, "ttl must be a duration such as \"24h\" or a number of seconds")
	}
	d, err := yamlstrict.ParseDuration(n.Value, time.Second, math.MaxInt64)
	if err != nil {
		return yamlstrict.Errorf(pos, "ttl: %v", err)
	}
	*t = ttl(d)
	return nil
}

// ParseViews parses and validates a feature-view file; name is used in error
// messages. Unknown keys are errors. Every problem found is returned in a
// yamlstrict.Errors, each with file:line:col.
func ParseViews(name string, data []byte) (*Views, error) {
	root, err := yamlstrict.Parse(name, data, "a feature view file")
	if err != nil {
		return nil, err
	}
	var doc viewsDoc
	if err := yamlstrict.Decode(name, root, &doc); err != nil {
		return nil, err
	}
	c := viewChecker{v: &Views{
		entities: make(map[string]*Entity),
		views:    make(map[string]*View),
	}}
	c.views(&doc, yamlstrict.PosOf(name, root))
	if err := c.errs.Err(); err != nil {
		return nil, err
	}
	return c.v, nil
}

// viewChecker builds Views from the decoded file, collecting problems.
type viewChecker struct {
	v    *Views
	errs yamlstrict.Errors
}

func (c *viewChecker) errorf(pos yamlstrict.Pos, format string, args ...any) {
	c.errs = append(c.errs, yamlstrict.Errorf(pos, format, args...))
}

// name checks a name that becomes part of Redis keys and field hashes.
func (c *viewChecker) name(s yamlstrict.String, what string) bool {
	switch {
	case s.Value == "":
		c.errorf(s.Pos, "%s must not be empty", what)
	case strings.ContainsAny(s.Value, ": \t\r\n"):
		c.errorf(s.Pos, "%s %q must not contain ':' or whitespace", what, s.Value)
	default:
		return true
	}
	return false
}

// valueType parses a written value type.
func (c *viewChecker) valueType(s yamlstrict.String) (ValueType, bool) {
	t, err := ParseValueType(s.Value)
	if err != nil {
		c.errorf(s.Pos, "%s", err)
		return 0, false
	}
	return t, true
}

// addNamed adds item to byName and list under name, unless another item
// of that name came before it.
func addNamed[T any](c *viewChecker, byName map[string]*T, list *[]*T, name string, item *T, pos yamlstrict.Pos, what string) {
	if _, dup := byName[name]; dup {
		c.errorf(pos, "duplicate %s %q", what, name)
		return
	}
	byName[name] = item
	*list = append(*list, item)
}

// named returns what with its name quoted after it, when it has one.
func named(what, name string) string {
	if name == "" {
		return what
	}
	return fmt.Sprintf("%s %q", what, name)
}

func (c *viewChecker) views(doc *viewsDoc, root yamlstrict.Pos) {
	if doc.Project.Pos.Line == 0 {
		c.errorf(root, "missing required key \"project\"")
	} else if c.name(doc.Project, "project") {
		c.v.Project = doc.Project.Value
	}
	for i := range doc.Entities {
		ed := &doc.Entities[i]
		if e, ok := c.entity(ed); ok {
			addNamed(c, c.v.entities, &c.v.Entities, e.Name, e, ed.Pos, "entity")
		}
	}
	// Views are checked after entities so that entity references resolve
	// whatever the key order in the file.
	for i := range doc.FeatureViews {
		vd := &doc.FeatureViews[i]
		if fv, ok := c.view(vd); ok {
			addNamed(c, c.v.views, &c.v.FeatureViews, fv.Name, fv, vd.Pos, "feature view")
		}
	}
}

func (c *viewChecker) entity(ed *entityDoc) (*Entity, bool) {
	n := len(c.errs)
	e := &Entity{Name: ed.Name.Value, Description: ed.Description}
	switch {
	case ed.Name.Pos.Line == 0:
		c.errorf(ed.Pos, "entity is missing required key \"name\"")
	case !c.name(ed.Name, "entity name"):
	case e.Name == DummyJoinKey:
		c.errorf(ed.Name.Pos, "entity name %q is reserved for entityless views", DummyJoinKey)
	}
	if ed.ValueType.Pos.Line == 0 {
		c.errorf(ed.Pos, "%s is missing required key \"value_type\"", named("entity", e.Name))
	} else if t, ok := c.valueType(ed.ValueType); ok {
		if validEntityType(t) {
			e.Type = t
		} else {
			c.errorf(ed.ValueType.Pos, "entity value_type %s is not allowed in entity keys; use STRING, BYTES, INT32 or INT64", t)
		}
	}
	return e, len(c.errs) == n
}

func (c *viewChecker) view(vd *viewDoc) (*View, bool) {
	n := len(c.errs)
	fv := &View{
		Name:           vd.Name.Value,
		TTL:            time.Duration(vd.TTL),
		TimestampField: vd.TimestampField,
		Description:    vd.Description,
		features:       make(map[string]*Feature),
	}
	if vd.Name.Pos.Line == 0 {
		c.errorf(vd.Pos, "feature view is missing required key \"name\"")
	} else {
		c.name(vd.Name, "feature view name")
	}
	for _, ref := range vd.Entities {
		switch {
		case !c.name(ref, "entity reference"):
		case c.v.entities[ref.Value] == nil:
			c.errorf(ref.Pos, "unknown entity %q", ref.Value)
		case slices.Contains(fv.JoinKeys, ref.Value):
			c.errorf(ref.Pos, "duplicate entity %q", ref.Value)
		default:
			fv.JoinKeys = append(fv.JoinKeys, ref.Value)
		}
	}
	for i := range vd.Features {
		fd := &vd.Features[i]
		if f, ok := c.feature(fd); ok {
			addNamed(c, fv.features, &fv.Features, f.Name, f, fd.Pos, "feature")
		}
	}
	if len(vd.Features) == 0 {
		at := vd.Pos
		if vd.FeaturesPos.Line != 0 {
			at = vd.FeaturesPos
		}
		c.errorf(at, "feature view %q has no features", fv.Name)
	}
	if len(c.errs) > n {
		return nil, false
	}
	slices.Sort(fv.JoinKeys)
	fv.KeyTypes = make([]ValueType, len(fv.JoinKeys))
	for i, jk := range fv.JoinKeys {
		fv.KeyTypes[i] = c.v.entities[jk].Type
	}
	if fv.TimestampField == "" {
		fv.TimestampField = "event_timestamp"
	}
	return fv, true
}

func (c *viewChecker) feature(fd *featureDoc) (*Feature, bool) {
	n := len(c.errs)
	f := &Feature{Name: fd.Name.Value, Description: fd.Description}
	if fd.Name.Pos.Line == 0 {
		c.errorf(fd.Pos, "feature is missing required key \"name\"")
	} else {
		c.name(fd.Name, "feature name")
	}
	if fd.DType.Pos.Line == 0 {
		c.errorf(fd.Pos, "%s is missing required key \"dtype\"", named("feature", f.Name))
	} else if t, ok := c.valueType(fd.DType); ok {
		f.Type = t
	}
	return f, len(c.errs) == n
}
