package server

import (
	"strconv"

	"github.com/lariat-gw/lariat/registry"
)

// allStages lists the stages in the order get-latest-versions reports them.
var allStages = []string{registry.StageNone, registry.StageStaging, registry.StageProduction, registry.StageArchived}

// ModelRecord is a registered model as a Store keeps it: the stored fields of
// RegisteredModel plus the last version number handed out, so that numbers are never
// reused after a version is deleted.
type ModelRecord struct {
	Name                 string           `json:"name"`
	CreationTimestamp    int64            `json:"creation_timestamp"`
	LastUpdatedTimestamp int64            `json:"last_updated_timestamp"`
	UserID               string           `json:"user_id,omitempty"`
	Description          string           `json:"description,omitempty"`
	Tags                 []registry.Tag   `json:"tags,omitempty"`
	Aliases              []registry.Alias `json:"aliases,omitempty"`
	LastVersion          int64            `json:"last_version"`
}

// Limits on tags, as MLflow enforces them.
const (
	maxTagKeyLen   = 250
	maxTagValueLen = 5000
)

func errModelNotFound(name string) *registry.Error {
	return registry.NewError(registry.CodeResourceDoesNotExist, "Registered Model with name=%s not found", name)
}

func errVersionNotFound(name, version string) *registry.Error {
	return registry.NewError(registry.CodeResourceDoesNotExist, "Model Version (name=%s, version=%s) not found", name, version)
}

// parseVersion checks a version parameter: a positive integer in decimal.
func parseVersion(v string) (int64, error) {
	if v == "" {
		return 0, registry.MissingParameter("version")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, registry.InvalidParameter("Parameter 'version' must be a positive integer, got %q", v)
	}
	return n, nil
}

func validateTag(key, value string) error {
	if key == "" {
		return registry.MissingParameter("key")
	}
	if len(key) > maxTagKeyLen {
		return registry.InvalidParameter("Tag key %q is longer than %d characters", key, maxTagKeyLen)
	}
	if len(value) > maxTagValueLen {
		return registry.InvalidParameter("Tag value for key %q is longer than %d characters", key, maxTagValueLen)
	}
	return nil
}

// setTag sets key to value in tags, keeping tags sorted by key.
func setTag(tags []registry.Tag, key, value string) []registry.Tag {
	for i := range tags {
		if tags[i].Key == key {
			tags[i].Value = value
			return tags
		}
	}
	tags = append(tags, registry.Tag{Key: key, Value: value})
	for i := len(tags) - 1; i > 0 && tags[i].Key < tags[i-1].Key; i-- {
		tags[i], tags[i-1] = tags[i-1], tags[i]
	}
	return tags
}

// deleteTag removes key from tags.
func deleteTag(tags []registry.Tag, key string) []registry.Tag {
	for i := range tags {
		if tags[i].Key == key {
			return append(tags[:i], tags[i+1:]...)
		}
	}
	return tags
}

// normalizeTags validates tags and returns them sorted by key, the last value of a
// repeated key winning.
func normalizeTags(in []registry.Tag) ([]registry.Tag, error) {
	var out []registry.Tag
	for _, t := range in {
		if err := validateTag(t.Key, t.Value); err != nil {
			return nil, err
		}
		out = setTag(out, t.Key, t.Value)
	}
	return out, nil
}

func tagValue(tags []registry.Tag, key string) (string, bool) {
	for _, t := range tags {
		if t.Key == key {
			return t.Value, true
		}
	}
	return "", false
}

func formatVersion(n int64) string {
	return strconv.FormatInt(n, 10)
}
