package training

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/lariat-gw/lariat/internal/yamlstrict"
)

// Hyperparameter is one hyperparameter value with its JSON type: a number, a
// string or a bool, held as its JSON text ("0.1", "200", `"adam"`, "true").
// A job receives the values with their types in LARIAT_HYPERPARAMETERS
// ({"epochs":200,"lr":0.1}) and as text in LARIAT_HP_<NAME>.
type Hyperparameter string

// StringHyperparameter returns the hyperparameter holding the string s.
func StringHyperparameter(s string) Hyperparameter {
	b, _ := json.Marshal(s)
	return Hyperparameter(b)
}

// Text returns the value as a job sees it in LARIAT_HP_<NAME>: a string
// without its quotes, numbers and bools as written.
func (h Hyperparameter) Text() string {
	if len(h) > 0 && h[0] == '"' {
		var s string
		if err := json.Unmarshal([]byte(h), &s); err == nil {
			return s
		}
	}
	return string(h)
}

// MarshalJSON implements json.Marshaler.
func (h Hyperparameter) MarshalJSON() ([]byte, error) {
	if h == "" {
		return []byte(`""`), nil
	}
	if !json.Valid([]byte(h)) {
		return nil, fmt.Errorf("hyperparameter %q is not a JSON value", string(h))
	}
	return []byte(h), nil
}

// UnmarshalJSON implements json.Unmarshaler: a number, string or bool.
func (h *Hyperparameter) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v.(type) {
	case string, float64, bool:
		*h = Hyperparameter(compactJSON(b))
		return nil
	}
	return fmt.Errorf("a hyperparameter must be a number, a string or a bool, got %s", b)
}

func compactJSON(b []byte) string {
	var v json.RawMessage
	if err := json.Unmarshal(b, &v); err != nil {
		return string(b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// UnmarshalNode implements yamlstrict.Unmarshaler: YAML integers and floats
// become JSON numbers, booleans bools, anything else a string.
func (h *Hyperparameter) UnmarshalNode(file string, n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return yamlstrict.Errorf(yamlstrict.PosOf(file, n), "a hyperparameter must be a number, a string or a bool")
	}
	switch n.ShortTag() {
	case "!!int":
		var v int64
		if err := n.Decode(&v); err != nil {
			return yamlstrict.Errorf(yamlstrict.PosOf(file, n), "integer %s is out of range", n.Value)
		}
		*h = Hyperparameter(jsonNumber(n.Value, strconv.FormatInt(v, 10)))
	case "!!float":
		var v float64
		if err := n.Decode(&v); err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return yamlstrict.Errorf(yamlstrict.PosOf(file, n), "%s is not a finite number", n.Value)
		}
		*h = Hyperparameter(jsonNumber(n.Value, strconv.FormatFloat(v, 'g', -1, 64)))
	case "!!bool":
		var v bool
		if err := n.Decode(&v); err != nil {
			return yamlstrict.Errorf(yamlstrict.PosOf(file, n), "%s is not a bool", n.Value)
		}
		*h = Hyperparameter(strconv.FormatBool(v))
	default:
		*h = StringHyperparameter(n.Value)
	}
	return nil
}

// jsonNumber returns text when it is a JSON number (keeping 1e-8 or 0.10 as
// written), else formatted (0x10, +5).
func jsonNumber(text, formatted string) string {
	var f float64
	if json.Valid([]byte(text)) && json.Unmarshal([]byte(text), &f) == nil {
		return text
	}
	return formatted
}

// hyperparameterTexts returns the values as text, as the registry keeps params.
func hyperparameterTexts(hp map[string]Hyperparameter) map[string]string {
	if len(hp) == 0 {
		return nil
	}
	out := make(map[string]string, len(hp))
	for k, v := range hp {
		out[k] = v.Text()
	}
	return out
}
