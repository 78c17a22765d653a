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

// NewError returns an API error with code and the formatted message.
func NewError(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// InvalidParameter returns an INVALID_PARAMETER_VALUE error with the formatted message.
func InvalidParameter(format string, args ...any) *Error {
	return NewError(CodeInvalidParameterValue, format, args...)
}

// MissingParameter returns the error MLflow answers when a required parameter is missing.
func MissingParameter(param string) *Error {
	return InvalidParameter("Missing value for required parameter '%s'. See the API docs for more information about request parameters.", param)
}

// Limits on names, as MLflow enforces them.
const (
	maxNameLen  = 256
	maxAliasLen = 255
)

// ValidateModelName checks a registered model name. Besides being non-empty, a name
// may not contain '/' or '@', which separate names from versions and aliases in
// model references ("eta/3", "eta@champion").
func ValidateModelName(param, name string) error {
	if name == "" {
		return MissingParameter(param)
	}
	if len(name) > maxNameLen {
		return InvalidParameter("Parameter '%s' is longer than %d characters", param, maxNameLen)
	}
	if strings.ContainsAny(name, "/@") {
		return InvalidParameter("Invalid value %q for parameter '%s': model names may not contain '/' or '@'", name, param)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return InvalidParameter("Invalid value %q for parameter '%s': control characters are not allowed", name, param)
		}
	}
	return nil
}

// ValidateAlias follows MLflow: an alias is made of letters, digits, '_' and '-',
// and neither "latest" nor of the form "v<digits>" (those would read as versions).
func ValidateAlias(alias string) error {
	if alias == "" {
		return MissingParameter("alias")
	}
	if len(alias) > maxAliasLen {
		return InvalidParameter("Alias %q is longer than %d characters", alias, maxAliasLen)
	}
	for _, r := range alias {
		ok := r == '_' || r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return InvalidParameter("Invalid alias name %q: only letters, digits, '_' and '-' are allowed", alias)
		}
	}
	if strings.EqualFold(alias, "latest") {
		return InvalidParameter("'latest' alias name (case insensitive) is reserved.")
	}
	if len(alias) > 1 && (alias[0] == 'v' || alias[0] == 'V') {
		if _, err := strconv.ParseUint(alias[1:], 10, 64); err == nil {
			return InvalidParameter("Version alias name %q is reserved.", alias)
		}
	}
	return nil
}

// CanonicalStage matches s case-insensitively against the stage names.
func CanonicalStage(s string) (string, bool) {
	for _, st := range allStages {
		if strings.EqualFold(s, st) {
			return st, true
		}
	}
	return "", false
}
