package sink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/predlog"
)

// errNotRecord is the error of a line that is not a JSON object.
var errNotRecord = errors.New("not a JSON object")

// decodeRecord sets r from one JSON record as Record.AppendJSON writes it.
// It does what json.Unmarshal does (TestDecodeRecord checks that),
// in about a sixth of the time: the sink process decodes every record.
// Unknown fields are ignored; raw JSON values (entity, value, request) are
// kept compact. r's strings share one copy of line.
func decodeRecord(line []byte, r *predlog.Record) error {
	if !gjson.ValidBytes(line) {
		return errNotRecord
	}
	doc := gjson.ParseBytes(line)
	if !doc.IsObject() {
		return errNotRecord
	}
	*r = predlog.Record{}
	var err error
	doc.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "request_id":
			r.RequestID, err = str(k, v)
		case "time":
			r.Time, err = timeOf(k, v)
		case "route":
			r.Route, err = str(k, v)
		case "route_version":
			r.RouteVersion, err = str(k, v)
		case "status":
			r.Status = int32(v.Int())
			err = want(k, v, gjson.Number)
		case "latency_ms":
			r.LatencyMs = v.Float()
			err = want(k, v, gjson.Number)
		case "error":
			r.Error, err = str(k, v)
		case "arms":
			err = each(k, v, func(v gjson.Result) error {
				var a predlog.Arm
				var err error
				v.ForEach(func(k, v gjson.Result) bool {
					switch k.Str {
					case "gate":
						a.Gate, err = str(k, v)
					case "arm":
						a.Arm, err = str(k, v)
					}
					return err == nil
				})
				r.Arms = append(r.Arms, a)
				return err
			})
		case "tasks":
			err = each(k, v, func(v gjson.Result) error {
				var t predlog.Task
				var err error
				v.ForEach(func(k, v gjson.Result) bool {
					switch k.Str {
					case "name":
						t.Name, err = str(k, v)
					case "kind":
						t.Kind, err = str(k, v)
					case "model":
						t.Model, err = str(k, v)
					case "version":
						t.Version, err = str(k, v)
					case "status":
						t.Status, err = str(k, v)
					case "code":
						t.Code = int32(v.Int())
						err = want(k, v, gjson.Number)
					case "latency_ms":
						t.LatencyMs = v.Float()
						err = want(k, v, gjson.Number)
					case "retries":
						t.Retries = int32(v.Int())
						err = want(k, v, gjson.Number)
					case "defaulted":
						t.Defaulted = v.Bool()
						if !v.IsBool() {
							err = fmt.Errorf("field %s: want true or false, got %.40s", k.Str, v.Raw)
						}
					case "error":
						t.Error, err = str(k, v)
					}
					return err == nil
				})
				r.Tasks = append(r.Tasks, t)
				return err
			})
		case "features":
			err = each(k, v, func(v gjson.Result) error {
				var f predlog.Feature
				var err error
				v.ForEach(func(k, v gjson.Result) bool {
					switch k.Str {
					case "task":
						f.Task, err = str(k, v)
					case "entity":
						f.Entity = raw(v)
					case "view":
						f.View, err = str(k, v)
					case "name":
						f.Name, err = str(k, v)
					case "value":
						f.Value = raw(v)
					case "status":
						f.Status, err = str(k, v)
					case "event_time":
						var t time.Time
						if t, err = timeOf(k, v); err == nil {
							f.EventTime = r.TimeOf(t)
						}
					}
					return err == nil
				})
				r.Features = append(r.Features, f)
				return err
			})
		case "outputs":
			err = each(k, v, func(v gjson.Result) error {
				var o predlog.Output
				var err error
				v.ForEach(func(k, v gjson.Result) bool {
					switch k.Str {
					case "path":
						o.Path, err = str(k, v)
					case "value":
						o.Value = raw(v)
					}
					return err == nil
				})
				r.Outputs = append(r.Outputs, o)
				return err
			})
		case "request":
			r.Request = raw(v)
		}
		return err == nil
	})
	// Empty lists, as json.Unmarshal leaves them (no allocation).
	if r.Arms == nil {
		r.Arms = []predlog.Arm{}
	}
	if r.Tasks == nil {
		r.Tasks = []predlog.Task{}
	}
	if r.Features == nil {
		r.Features = []predlog.Feature{}
	}
	if r.Outputs == nil {
		r.Outputs = []predlog.Output{}
	}
	return err
}

func want(k, v gjson.Result, t gjson.Type) error {
	if v.Type != t {
		return fmt.Errorf("field %s: want a %s, got %.40s", k.Str, t, v.Raw)
	}
	return nil
}

func str(k, v gjson.Result) (string, error) {
	return v.Str, want(k, v, gjson.String)
}

func timeOf(k, v gjson.Result) (time.Time, error) {
	if err := want(k, v, gjson.String); err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, v.Str)
	if err != nil {
		return time.Time{}, fmt.Errorf("field %s: %w", k.Str, err)
	}
	return t, nil
}

// each calls fn for each object of the array v.
func each(k, v gjson.Result, fn func(v gjson.Result) error) error {
	if !v.IsArray() {
		return fmt.Errorf("field %s: want a list, got %.40s", k.Str, v.Raw)
	}
	var err error
	v.ForEach(func(_, v gjson.Result) bool {
		if !v.IsObject() {
			err = fmt.Errorf("field %s: want objects in the list, got %.40s", k.Str, v.Raw)
		} else {
			err = fn(v)
		}
		return err == nil
	})
	return err
}

// raw returns a raw JSON value, compacted when it holds whitespace.
func raw(v gjson.Result) predlog.JSON {
	s := v.Raw
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			var b bytes.Buffer
			if json.Compact(&b, []byte(s)) == nil {
				return predlog.JSON(b.String())
			}
			break
		}
	}
	return predlog.JSON(s)
}
