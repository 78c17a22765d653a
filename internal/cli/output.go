package cli

import (
	"encoding/json"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes v to w as indented JSON followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteJSONList is WriteJSON for a list: a nil list is written as [], not null.
func WriteJSONList[T any](w io.Writer, list []T) error {
	if list == nil {
		list = []T{}
	}
	return WriteJSON(w, list)
}

// NewTable returns a tabwriter aligning tab-separated cells into columns two
// spaces apart; Flush writes the table to w.
func NewTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// Dash returns s, or "-" when s is empty, for table cells.
func Dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// JoinMap returns the entries of m as key=value, ordered by key and separated
// by sep; format renders a value.
func JoinMap[V any](m map[string]V, sep string, format func(V) string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + format(m[k])
	}
	return strings.Join(parts, sep)
}
