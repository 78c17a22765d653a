package ingest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lariat-gw/lariat/featurefetch"
)

// NoKeyTTL as SchemaOptions.KeyTTL disables key expiry.
const NoKeyTTL time.Duration = -1

// maxFeatures bounds the features of one view: the write script passes a
// row's fields to HSET through Lua's unpack, whose stack holds about 8000 values.
const maxFeatures = 3000

// SchemaOptions tunes NewSchema.
type SchemaOptions struct {
	// Project overrides the project of the views file; "" keeps it.
	Project string
	// KeyTTL is the expiry of the entity hashes written: 0 derives it from the
	// views (see the package doc), NoKeyTTL disables expiry, a positive value
	// is used as it is.
	KeyTTL time.Duration
}

// ColumnKind tells what an input column holds.
type ColumnKind uint8

// Column kinds.
const (
	// KeyColumn is an entity join key.
	KeyColumn ColumnKind = iota
	// TimestampColumn is the event time of the row.
	TimestampColumn
	// FeatureColumn is a feature value.
	FeatureColumn
)

// Column is one input column a feature view needs.
type Column struct {
	Name string
	Kind ColumnKind
	// Type is the declared value type (TypeInvalid for the timestamp column).
	Type featurefetch.ValueType
}

// Schema is the compiled write layout of one feature view: the input columns
// it needs and the Redis fields it writes. It is immutable and safe for
// concurrent use.
type Schema struct {
	view    *featurefetch.View
	project string
	keyTTL  time.Duration
	// columns: join keys (sorted, as in the view), the timestamp, the features.
	columns  []Column
	nKeys    int
	keyNames []string
	// header holds the script's leading arguments: the timestamp field, the
	// key TTL in ms, the feature count and the features' hash fields.
	header  []string
	metrics *viewMetrics
	pool    sync.Pool // *batch, for push requests
}

// NewSchema compiles the write layout of the view named view.
func NewSchema(views *featurefetch.Views, view string, opt SchemaOptions) (*Schema, error) {
	fv, ok := views.View(view)
	if !ok {
		names := make([]string, 0, len(views.FeatureViews))
		for _, v := range views.FeatureViews {
			names = append(names, v.Name)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("unknown feature view %q; known views: %s", view, strings.Join(names, ", "))
	}
	if len(fv.Features) > maxFeatures {
		return nil, fmt.Errorf("feature view %q has %d features; at most %d are supported", view, len(fv.Features), maxFeatures)
	}
	s := &Schema{
		view:     fv,
		project:  opt.Project,
		keyNames: fv.JoinKeys,
		nKeys:    len(fv.JoinKeys),
		metrics:  newViewMetrics(fv.Name),
	}
	if s.project == "" {
		s.project = views.Project
	}
	switch {
	case opt.KeyTTL < 0:
		s.keyTTL = 0
	case opt.KeyTTL > 0:
		s.keyTTL = opt.KeyTTL
	default:
		s.keyTTL = viewsKeyTTL(views, fv)
	}
	if s.nKeys == 0 {
		s.keyNames = []string{featurefetch.DummyJoinKey}
	}
	for i, jk := range fv.JoinKeys {
		s.columns = append(s.columns, Column{Name: jk, Kind: KeyColumn, Type: fv.KeyTypes[i]})
	}
	tsName := fv.TimestampField
	if tsName == "" {
		tsName = "event_timestamp"
	}
	s.columns = append(s.columns, Column{Name: tsName, Kind: TimestampColumn})
	for _, f := range fv.Features {
		if f.Name == tsName || slices.Contains(fv.JoinKeys, f.Name) {
			return nil, fmt.Errorf("feature view %q: feature %q has the name of a key or timestamp column", view, f.Name)
		}
		s.columns = append(s.columns, Column{Name: f.Name, Kind: FeatureColumn, Type: f.Type})
	}
	ttlMS := s.keyTTL.Milliseconds()
	if s.keyTTL > 0 && ttlMS == 0 {
		ttlMS = 1
	}
	s.header = append(s.header, featurefetch.TimestampField(fv.Name), strconv.FormatInt(ttlMS, 10), strconv.Itoa(len(fv.Features)))
	for _, f := range fv.Features {
		s.header = append(s.header, featurefetch.FieldHash(fv.Name, f.Name))
	}
	return s, nil
}

// viewsKeyTTL returns the largest ttl of the views sharing fv's join keys
// (and so its entity hashes), or 0 when one of them has none.
func viewsKeyTTL(views *featurefetch.Views, fv *featurefetch.View) time.Duration {
	var ttl time.Duration
	for _, v := range views.FeatureViews {
		if !slices.Equal(v.JoinKeys, fv.JoinKeys) {
			continue
		}
		if v.TTL <= 0 {
			return 0
		}
		ttl = max(ttl, v.TTL)
	}
	return ttl
}

// View returns the feature view.
func (s *Schema) View() *featurefetch.View {
	return s.view
}

// Project returns the project the keys are written under.
func (s *Schema) Project() string {
	return s.project
}

// KeyTTL returns the expiry set on the entity hashes written; 0 means none.
func (s *Schema) KeyTTL() time.Duration {
	return s.keyTTL
}

// Columns returns the input columns the view needs: its join keys (sorted),
// the event-time column, then its features in view order.
func (s *Schema) Columns() []Column {
	return s.columns
}

// tsSlot is the index of the timestamp column in columns.
func (s *Schema) tsSlot() int {
	return s.nKeys
}

// nFeatures returns the number of features.
func (s *Schema) nFeatures() int {
	return len(s.columns) - s.nKeys - 1
}
