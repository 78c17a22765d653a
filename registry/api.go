package registry

// APIPrefix starts the path of every REST API call.
const APIPrefix = "/api/2.0/mlflow/"

// CreateModelRequest is the body of registered-models/create.
type CreateModelRequest struct {
	Name        string `json:"name"`
	Tags        []Tag  `json:"tags,omitempty"`
	Description string `json:"description,omitempty"`
}

// CreateVersionRequest is the body of model-versions/create, with the gateway's fields.
type CreateVersionRequest struct {
	Name        string `json:"name"`
	Source      string `json:"source"`
	RunID       string `json:"run_id,omitempty"`
	Tags        []Tag  `json:"tags,omitempty"`
	RunLink     string `json:"run_link,omitempty"`
	Description string `json:"description,omitempty"`

	ServingEndpoint string             `json:"serving_endpoint,omitempty"`
	TrainingJob     string             `json:"training_job,omitempty"`
	Params          map[string]string  `json:"params,omitempty"`
	Metrics         map[string]float64 `json:"metrics,omitempty"`
	FeatureViews    []string           `json:"feature_views,omitempty"`
}

// UpdateVersionRequest is the body of model-versions/update. Nil fields are left as
// they are; ServingEndpoint is the gateway's extension (MLflow updates only the
// description).
type UpdateVersionRequest struct {
	Name            string  `json:"name"`
	Version         string  `json:"version"`
	Description     *string `json:"description,omitempty"`
	ServingEndpoint *string `json:"serving_endpoint,omitempty"`
}

// SearchRequest holds the parameters of registered-models/search and model-versions/search.
//
// Filter is MLflow's search syntax restricted to comparisons joined by AND, e.g.
// "name = 'eta' AND tags.team LIKE 'ml-%'". Model searches accept name and
// tags.<key>; version searches also accept version (or version_number), run_id,
// source_path (or source), current_stage, status, training_job and serving_endpoint.
// Operators: =, !=, LIKE, ILIKE, IN (...), NOT IN (...), and <, <=, >, >= on versions.
//
// Tags compare as in MLflow's server: a clause on a tag the model (or
// version) does not have never matches, whatever the operator. The prompt
// marker tag mlflow.prompt.is_prompt is the exception: unless the filter
// asks for prompts (is_prompt = 'true' or != 'false'), its clauses are
// dropped and models tagged is_prompt = 'true' are left out, so the
// client's added "tag.`mlflow.prompt.is_prompt` != 'true'" matches every
// model without the tag.
type SearchRequest struct {
	Filter     string   `json:"filter,omitempty"`
	MaxResults int64    `json:"max_results,omitempty"`
	OrderBy    []string `json:"order_by,omitempty"`
	PageToken  string   `json:"page_token,omitempty"`
}

// ModelResponse is the answer of calls that return one registered model.
type ModelResponse struct {
	RegisteredModel *RegisteredModel `json:"registered_model"`
}

// VersionResponse is the answer of calls that return one model version.
type VersionResponse struct {
	ModelVersion *ModelVersion `json:"model_version"`
}

// ModelsPage is one page of registered-models/search.
type ModelsPage struct {
	RegisteredModels []RegisteredModel `json:"registered_models"`
	NextPageToken    string            `json:"next_page_token,omitempty"`
}

// VersionsPage is one page of model-versions/search.
type VersionsPage struct {
	ModelVersions []ModelVersion `json:"model_versions"`
	NextPageToken string         `json:"next_page_token,omitempty"`
}

// VersionsList is the answer of registered-models/get-latest-versions.
type VersionsList struct {
	ModelVersions []ModelVersion `json:"model_versions"`
}

// RunResponse is the answer of runs/get and runs/record.
type RunResponse struct {
	Run *Run `json:"run"`
}
