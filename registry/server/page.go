package server

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/lariat-gw/lariat/registry"
)

// pageLimits are the default and the largest max_results of one kind of search.
type pageLimits struct {
	def, max int64
}

// Search limits, as MLflow sets them.
var (
	modelLimits   = pageLimits{def: 100, max: 1000}
	versionLimits = pageLimits{def: 10000, max: 200000}
	runLimits     = pageLimits{def: 1000, max: 50000}
)

// searchPage is what every search does once its filter and order are parsed:
// it checks max_results and the page token against limits, keeps what scan
// yields that match accepts, sorts it stably by order and returns the page with
// the token of the next page ("" on the last page).
func searchPage[T any](limits pageLimits, maxResults int64, pageToken string,
	scan func(yield func(T) error) error, match func(T) bool, order func(a, b T) int) ([]T, string, error) {
	size, offset, err := limits.parse(maxResults, pageToken)
	if err != nil {
		return nil, "", err
	}
	var found []T
	err = scan(func(x T) error {
		if match(x) {
			found = append(found, x)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	slices.SortStableFunc(found, order)
	start, end, next := pageBounds(offset, size, len(found))
	return found[start:end], next, nil
}

// parse checks max_results and the page token: the page's size and offset.
func (l pageLimits) parse(maxResults int64, pageToken string) (size, offset int, err error) {
	switch {
	case maxResults < 0:
		return 0, 0, registry.InvalidParameter("Invalid value %d for parameter 'max_results': it must be positive", maxResults)
	case maxResults > l.max:
		return 0, 0, registry.InvalidParameter("Invalid value %d for parameter 'max_results': it must be at most %d", maxResults, l.max)
	case maxResults == 0:
		maxResults = l.def
	}
	offset, err = decodePageToken(pageToken)
	if err != nil {
		return 0, 0, err
	}
	return int(maxResults), offset, nil
}

// pageBounds returns the slice bounds of the page of size at offset within n
// results, and the next page token.
func pageBounds(offset, size, n int) (start, end int, next string) {
	start = min(offset, n)
	end = start + size
	if end < n {
		next = encodePageToken(end)
	} else {
		end = n
	}
	return start, end, next
}

// pageToken is the decoded form of a page_token: base64 of {"offset": N}, as MLflow
// encodes its tokens.
type pageToken struct {
	Offset int `json:"offset"`
}

func encodePageToken(offset int) string {
	data, _ := json.Marshal(pageToken{Offset: offset})
	return base64.StdEncoding.EncodeToString(data)
}

func decodePageToken(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return 0, registry.InvalidParameter("Invalid page token, could not base64-decode")
	}
	var t pageToken
	if err := json.Unmarshal(data, &t); err != nil || t.Offset < 0 {
		return 0, registry.InvalidParameter("Invalid page token, could not decode offset")
	}
	return t.Offset, nil
}

// orderKey is one order_by clause of a model or version search.
type orderKey struct {
	field string
	desc  bool
}

// compareBy returns the order keys define, field comparing one field of two
// records.
func compareBy[T any](keys []orderKey, field func(a, b T, name string) int) func(a, b T) int {
	return func(a, b T) int {
		for _, k := range keys {
			if c := field(a, b, k.field); c != 0 {
				if k.desc {
					return -c
				}
				return c
			}
		}
		return 0
	}
}

// compareModelField compares a model field that order_by names.
func compareModelField(a, b *ModelRecord, field string) int {
	switch field {
	case "name":
		return strings.Compare(a.Name, b.Name)
	case "creation_timestamp":
		return cmp.Compare(a.CreationTimestamp, b.CreationTimestamp)
	case "last_updated_timestamp":
		return cmp.Compare(a.LastUpdatedTimestamp, b.LastUpdatedTimestamp)
	}
	return 0
}

// compareVersionField compares a model version field that order_by names.
func compareVersionField(a, b *registry.ModelVersion, field string) int {
	switch field {
	case "name":
		return strings.Compare(a.Name, b.Name)
	case "version":
		return cmp.Compare(versionNumber(a), versionNumber(b))
	case "creation_timestamp":
		return cmp.Compare(a.CreationTimestamp, b.CreationTimestamp)
	case "last_updated_timestamp":
		return cmp.Compare(a.LastUpdatedTimestamp, b.LastUpdatedTimestamp)
	}
	return 0
}

func versionNumber(v *registry.ModelVersion) int64 {
	n, _ := strconv.ParseInt(v.Version, 10, 64)
	return n
}
