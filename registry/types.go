package registry

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Stage names as MLflow spells them. Stages are deprecated in MLflow in favour of
// aliases and tags but still served.
const (
	StageNone       = "None"
	StageStaging    = "Staging"
	StageProduction = "Production"
	StageArchived   = "Archived"
)

// allStages lists the stages in the order get-latest-versions reports them.
var allStages = []string{StageNone, StageStaging, StageProduction, StageArchived}

// StatusReady is the only model version status this registry produces: versions
// are registered synchronously.
const StatusReady = "READY"

// Tag is a key/value pair on a registered model or a model version.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Alias names a version of a registered model.
type Alias struct {
	Alias   string `json:"alias"`
	Version string `json:"version"`
}

// RegisteredModel is MLflow's registered_model object.
type RegisteredModel struct {
	Name                 string         `json:"name"`
	CreationTimestamp    int64          `json:"creation_timestamp"`
	LastUpdatedTimestamp int64          `json:"last_updated_timestamp"`
	UserID               string         `json:"user_id,omitempty"`
	Description          string         `json:"description"`
	LatestVersions       []ModelVersion `json:"latest_versions,omitempty"`
	Tags                 []Tag          `json:"tags,omitempty"`
	Aliases              []Alias        `json:"aliases,omitempty"`
}

// ModelVersion is MLflow's model_version object plus the gateway's fields.
type ModelVersion struct {
	Name                 string `json:"name"`
	Version              string `json:"version"`
	CreationTimestamp    int64  `json:"creation_timestamp"`
	LastUpdatedTimestamp int64  `json:"last_updated_timestamp"`
	UserID               string `json:"user_id,omitempty"`
	CurrentStage         string `json:"current_stage"`
	Description          string `json:"description"`
	Source               string `json:"source"`
	RunID                string `json:"run_id"`
	Status               string `json:"status"`
	StatusMessage        string `json:"status_message"`
	Tags                 []Tag  `json:"tags,omitempty"`
	RunLink              string `json:"run_link"`
	// Aliases is derived from the registered model's aliases; stores do not keep it.
	Aliases []string `json:"aliases,omitempty"`

	// ServingEndpoint is the URL the gateway sends prediction requests for this version to.
	ServingEndpoint string `json:"serving_endpoint,omitempty"`
	// TrainingJob is the id of the training job that produced this version.
	TrainingJob string `json:"training_job,omitempty"`
	// Params are the training parameters.
	Params map[string]string `json:"params,omitempty"`
	// Metrics are the evaluation metrics.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// FeatureViews names the feature views the model reads.
	FeatureViews []string `json:"feature_views,omitempty"`
}

// ModelRecord is a registered model as a Store keeps it: the stored fields of
// RegisteredModel plus the last version number handed out, so that numbers are never
// reused after a version is deleted.
type ModelRecord struct {
	Name                 string  `json:"name"`
	CreationTimestamp    int64   `json:"creation_timestamp"`
	LastUpdatedTimestamp int64   `json:"last_updated_timestamp"`
	UserID               string  `json:"user_id,omitempty"`
	Description          string  `json:"description,omitempty"`
	Tags                 []Tag   `json:"tags,omitempty"`
	Aliases              []Alias `json:"aliases,omitempty"`
	LastVersion          int64   `json:"last_version"`
}

// Error codes used in API errors, as MLflow names them.
const (
	CodeResourceDoesNotExist  = "RESOURCE_DOES_NOT_EXIST"
	CodeResourceAlreadyExists = "RESOURCE_ALREADY_EXISTS"
	CodeInvalidParameterValue = "INVALID_PARAMETER_VALUE"
	CodeBadRequest            = "BAD_REQUEST"
	CodeEndpointNotFound      = "ENDPOINT_NOT_FOUND"
	CodeInternalError         = "INTERNAL_ERROR"
)

// Error is an API error in MLflow's shape: {"error_code": "...", "message": "..."}.
type Error struct {
	Code    string `json:"error_code"`
	Message string `json:"message"`
	// Status is the HTTP status the error was (or is to be) served with.
	Status int `json:"-"`
}

// Error implements error.
func (e *Error) Error() string {
	return e.Code + ": " + e.Message
}

// HTTPStatus returns the HTTP status for e: e.Status when set, else MLflow's mapping
// of e.Code.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	switch e.Code {
	case CodeResourceDoesNotExist, CodeEndpointNotFound:
		return http.StatusNotFound
	case CodeResourceAlreadyExists, CodeInvalidParameterValue, CodeBadRequest:
		return http.StatusBadRequest
	case "PERMISSION_DENIED":
		return http.StatusForbidden
	case "UNAUTHENTICATED":
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// ErrorCode returns the API error code carried by err, or "" when err is not an *Error.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// IsNotFound reports whether err is an API error saying the resource does not exist.
func IsNotFound(err error) bool {
	return ErrorCode(err) == CodeResourceDoesNotExist
}

func newError(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func errInvalid(format string, args ...any) *Error {
	return newError(CodeInvalidParameterValue, format, args...)
}

func errMissing(param string) *Error {
	return errInvalid("Missing value for required parameter '%s'. See the API docs for more information about request parameters.", param)
}

func errModelNotFound(name string) *Error {
	return newError(CodeResourceDoesNotExist, "Registered Model with name=%s not found", name)
}

func errVersionNotFound(name, version string) *Error {
	return newError(CodeResourceDoesNotExist, "Model Version (name=%s, version=%s) not found", name, version)
}

// Limits on user input, as MLflow enforces them.
const (
	maxNameLen     = 256
	maxTagKeyLen   = 250
	maxTagValueLen = 5000
	maxAliasLen    = 255
)

// validateModelName checks a registered model name. Besides being non-empty, a name
// may not contain '/' or '@', which separate names from versions and aliases in
// model references ("eta/3", "eta@champion").
func validateModelName(param, name string) error {
	if name == "" {
		return errMissing(param)
	}
	if len(name) > maxNameLen {
		return errInvalid("Parameter '%s' is longer than %d characters", param, maxNameLen)
	}
	if strings.ContainsAny(name, "/@") {
		return errInvalid("Invalid value %q for parameter '%s': model names may not contain '/' or '@'", name, param)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return errInvalid("Invalid value %q for parameter '%s': control characters are not allowed", name, param)
		}
	}
	return nil
}

// parseVersion checks a version parameter: a positive integer in decimal.
func parseVersion(v string) (int64, error) {
	if v == "" {
		return 0, errMissing("version")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, errInvalid("Parameter 'version' must be a positive integer, got %q", v)
	}
	return n, nil
}

func validateTag(key, value string) error {
	if key == "" {
		return errMissing("key")
	}
	if len(key) > maxTagKeyLen {
		return errInvalid("Tag key %q is longer than %d characters", key, maxTagKeyLen)
	}
	if len(value) > maxTagValueLen {
		return errInvalid("Tag value for key %q is longer than %d characters", key, maxTagValueLen)
	}
	return nil
}

// validateAlias follows MLflow: an alias is made of letters, digits, '_' and '-',
// and neither "latest" nor of the form "v<digits>" (those would read as versions).
func validateAlias(alias string) error {
	if alias == "" {
		return errMissing("alias")
	}
	if len(alias) > maxAliasLen {
		return errInvalid("Alias %q is longer than %d characters", alias, maxAliasLen)
	}
	for _, r := range alias {
		ok := r == '_' || r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return errInvalid("Invalid alias name %q: only letters, digits, '_' and '-' are allowed", alias)
		}
	}
	if strings.EqualFold(alias, "latest") {
		return errInvalid("'latest' alias name (case insensitive) is reserved.")
	}
	if len(alias) > 1 && (alias[0] == 'v' || alias[0] == 'V') {
		if _, err := strconv.ParseUint(alias[1:], 10, 64); err == nil {
			return errInvalid("Version alias name %q is reserved.", alias)
		}
	}
	return nil
}

// canonicalStage matches s case-insensitively against the stage names.
func canonicalStage(s string) (string, bool) {
	for _, st := range allStages {
		if strings.EqualFold(s, st) {
			return st, true
		}
	}
	return "", false
}

// setTag sets key to value in tags, keeping tags sorted by key.
func setTag(tags []Tag, key, value string) []Tag {
	for i := range tags {
		if tags[i].Key == key {
			tags[i].Value = value
			return tags
		}
	}
	tags = append(tags, Tag{Key: key, Value: value})
	for i := len(tags) - 1; i > 0 && tags[i].Key < tags[i-1].Key; i-- {
		tags[i], tags[i-1] = tags[i-1], tags[i]
	}
	return tags
}

// deleteTag removes key from tags.
func deleteTag(tags []Tag, key string) []Tag {
	for i := range tags {
		if tags[i].Key == key {
			return append(tags[:i], tags[i+1:]...)
		}
	}
	return tags
}

// normalizeTags validates tags and returns them sorted by key, the last value of a
// repeated key winning.
func normalizeTags(in []Tag) ([]Tag, error) {
	var out []Tag
	for _, t := range in {
		if err := validateTag(t.Key, t.Value); err != nil {
			return nil, err
		}
		out = setTag(out, t.Key, t.Value)
	}
	return out, nil
}

func tagValue(tags []Tag, key string) (string, bool) {
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
