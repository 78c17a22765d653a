package featurefetch

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
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

// ConfigError is an error in a feature-view file, with its position.
type ConfigError struct {
	File   string
	Line   int
	Column int
	Msg    string
}

// Error returns "file:line:col: msg".
func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

// LoadViews reads and validates the feature-view file at path.
func LoadViews(path string) (*Views, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read feature views: %w", err)
	}
	return ParseViews(path, data)
}

// ParseViews parses and validates a feature-view file; name is used in error messages.
// Unknown keys are errors. Errors are *ConfigError values naming file:line:col.
func ParseViews(name string, data []byte) (*Views, error) {
	p := &viewParser{file: name}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: cannot parse YAML: %w", name, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, &ConfigError{File: name, Line: 1, Column: 1, Msg: "empty feature view file"}
	}
	v, err := p.views(doc.Content[0])
	if err != nil {
		return nil, err
	}
	return v, nil
}

type viewParser struct {
	file string
}

func (p *viewParser) errf(n *yaml.Node, format string, args ...any) error {
	return &ConfigError{File: p.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)}
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

// fields checks that n is a mapping with unique keys out of known and calls fn per entry.
func (p *viewParser) fields(n *yaml.Node, what string, known []string, fn func(key string, k, v *yaml.Node) error) error {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return p.errf(n, "%s must be a mapping", what)
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return p.errf(k, "%s: keys must be strings", what)
		}
		if !slices.Contains(known, k.Value) {
			return p.errf(k, "unknown key %q in %s; known keys: %s", k.Value, what, strings.Join(known, ", "))
		}
		if seen[k.Value] {
			return p.errf(k, "duplicate key %q in %s", k.Value, what)
		}
		seen[k.Value] = true
		if err := fn(k.Value, k, val); err != nil {
			return err
		}
	}
	return nil
}

func (p *viewParser) str(n *yaml.Node, what string) (string, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" && n.Tag != "!!bool") {
		return "", p.errf(n, "%s must be a string", what)
	}
	return n.Value, nil
}

func (p *viewParser) name(n *yaml.Node, what string) (string, error) {
	s, err := p.str(n, what)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", p.errf(n, "%s must not be empty", what)
	}
	if strings.ContainsAny(s, ": \t\r\n") {
		return "", p.errf(n, "%s %q must not contain ':' or whitespace", what, s)
	}
	return s, nil
}

func (p *viewParser) seq(n *yaml.Node, what string) ([]*yaml.Node, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, "%s must be a list", what)
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = resolve(c)
	}
	return out, nil
}

func (p *viewParser) views(root *yaml.Node) (*Views, error) {
	v := &Views{
		entities: make(map[string]*Entity),
		views:    make(map[string]*View),
	}
	var projectNode *yaml.Node
	var viewNodes []*yaml.Node
	err := p.fields(root, "feature view file", []string{"project", "entities", "feature_views"}, func(key string, k, val *yaml.Node) error {
		switch key {
		case "project":
			projectNode = val
			s, err := p.name(val, "project")
			v.Project = s
			return err
		case "entities":
			items, err := p.seq(val, "entities")
			if err != nil {
				return err
			}
			for _, it := range items {
				e, err := p.entity(it)
				if err != nil {
					return err
				}
				if _, dup := v.entities[e.Name]; dup {
					return p.errf(it, "duplicate entity %q", e.Name)
				}
				v.entities[e.Name] = e
				v.Entities = append(v.Entities, e)
			}
		case "feature_views":
			items, err := p.seq(val, "feature_views")
			if err != nil {
				return err
			}
			viewNodes = items
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if projectNode == nil {
		return nil, p.errf(root, "missing required key \"project\"")
	}
	// Views are parsed after entities so that entity references resolve
	// whatever the key order in the file.
	for _, it := range viewNodes {
		fv, err := p.view(it, v)
		if err != nil {
			return nil, err
		}
		if _, dup := v.views[fv.Name]; dup {
			return nil, p.errf(it, "duplicate feature view %q", fv.Name)
		}
		v.views[fv.Name] = fv
		v.FeatureViews = append(v.FeatureViews, fv)
	}
	return v, nil
}

func (p *viewParser) entity(n *yaml.Node) (*Entity, error) {
	e := &Entity{}
	var typeSet bool
	err := p.fields(n, "entity", []string{"name", "value_type", "description"}, func(key string, k, val *yaml.Node) error {
		var err error
		switch key {
		case "name":
			e.Name, err = p.name(val, "entity name")
			if err == nil && e.Name == DummyJoinKey {
				err = p.errf(val, "entity name %q is reserved for entityless views", DummyJoinKey)
			}
		case "value_type":
			var s string
			if s, err = p.str(val, "value_type"); err != nil {
				return err
			}
			if e.Type, err = ParseValueType(s); err != nil {
				return p.errf(val, "%s", err)
			}
			if !validEntityType(e.Type) {
				return p.errf(val, "entity value_type %s is not allowed in entity keys; use STRING, BYTES, INT32 or INT64", e.Type)
			}
			typeSet = true
		case "description":
			e.Description, err = p.str(val, "description")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if e.Name == "" {
		return nil, p.errf(n, "entity is missing required key \"name\"")
	}
	if !typeSet {
		return nil, p.errf(n, "entity %q is missing required key \"value_type\"", e.Name)
	}
	return e, nil
}

func (p *viewParser) view(n *yaml.Node, v *Views) (*View, error) {
	fv := &View{features: make(map[string]*Feature)}
	var featuresNode *yaml.Node
	known := []string{"name", "entities", "features", "ttl", "timestamp_field", "description"}
	err := p.fields(n, "feature view", known, func(key string, k, val *yaml.Node) error {
		var err error
		switch key {
		case "name":
			fv.Name, err = p.name(val, "feature view name")
		case "entities":
			var items []*yaml.Node
			if items, err = p.seq(val, "entities"); err != nil {
				return err
			}
			for _, it := range items {
				name, err := p.name(it, "entity reference")
				if err != nil {
					return err
				}
				if _, ok := v.entities[name]; !ok {
					return p.errf(it, "unknown entity %q", name)
				}
				if slices.Contains(fv.JoinKeys, name) {
					return p.errf(it, "duplicate entity %q", name)
				}
				fv.JoinKeys = append(fv.JoinKeys, name)
			}
		case "features":
			featuresNode = val
			var items []*yaml.Node
			if items, err = p.seq(val, "features"); err != nil {
				return err
			}
			for _, it := range items {
				f, err := p.feature(it)
				if err != nil {
					return err
				}
				if _, dup := fv.features[f.Name]; dup {
					return p.errf(it, "duplicate feature %q", f.Name)
				}
				fv.features[f.Name] = f
				fv.Features = append(fv.Features, f)
			}
		case "ttl":
			fv.TTL, err = p.duration(val, "ttl")
		case "timestamp_field":
			fv.TimestampField, err = p.str(val, "timestamp_field")
		case "description":
			fv.Description, err = p.str(val, "description")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if fv.Name == "" {
		return nil, p.errf(n, "feature view is missing required key \"name\"")
	}
	if len(fv.Features) == 0 {
		at := n
		if featuresNode != nil {
			at = featuresNode
		}
		return nil, p.errf(at, "feature view %q has no features", fv.Name)
	}
	slices.Sort(fv.JoinKeys)
	fv.KeyTypes = make([]ValueType, len(fv.JoinKeys))
	for i, jk := range fv.JoinKeys {
		fv.KeyTypes[i] = v.entities[jk].Type
	}
	if fv.TimestampField == "" {
		fv.TimestampField = "event_timestamp"
	}
	return fv, nil
}

func (p *viewParser) feature(n *yaml.Node) (*Feature, error) {
	f := &Feature{}
	var typeSet bool
	err := p.fields(n, "feature", []string{"name", "dtype", "description"}, func(key string, k, val *yaml.Node) error {
		var err error
		switch key {
		case "name":
			f.Name, err = p.name(val, "feature name")
		case "dtype":
			var s string
			if s, err = p.str(val, "dtype"); err != nil {
				return err
			}
			if f.Type, err = ParseValueType(s); err != nil {
				return p.errf(val, "%s", err)
			}
			typeSet = true
		case "description":
			f.Description, err = p.str(val, "description")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if f.Name == "" {
		return nil, p.errf(n, "feature is missing required key \"name\"")
	}
	if !typeSet {
		return nil, p.errf(n, "feature %q is missing required key \"dtype\"", f.Name)
	}
	return f, nil
}

// duration accepts a Go duration string ("24h", "90m") or a whole number of seconds.
func (p *viewParser) duration(n *yaml.Node, what string) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, p.errf(n, "%s must be a duration such as \"24h\" or a number of seconds", what)
	}
	var d time.Duration
	if n.Tag == "!!int" {
		secs, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil || secs < 0 || secs > int64(1<<63-1)/int64(time.Second) {
			return 0, p.errf(n, "%s: invalid number of seconds %q", what, n.Value)
		}
		d = time.Duration(secs) * time.Second
	} else {
		var err error
		if d, err = time.ParseDuration(n.Value); err != nil {
			return 0, p.errf(n, "%s: %s", what, err)
		}
	}
	if d < 0 {
		return 0, p.errf(n, "%s must not be negative", what)
	}
	return d, nil
}
