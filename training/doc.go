// Package training owns training-job submission: job and study specs (strict YAML or
// JSON), the backends that run jobs (a local process runner, a Kubernetes batch/v1
// Job and Kubeflow PyTorchJob/TFJob), job status with Created/Running/Succeeded/Failed
// conditions persisted under a state directory, hyperparameter studies (random or grid
// search with early stopping), the registration of trained models in the model
// registry with their lineage, and the REST API and Client of the lariat-train
// sidecar.
//
// A job receives its inputs and where to write its outputs as environment variables
// (LARIAT_JOB_ID, LARIAT_HP_<NAME>, LARIAT_LABELS, LARIAT_ARTIFACT_DIR,
// LARIAT_METRICS_FILE, ...; see JobEnv). Command and args may reference them as
// $(NAME), as in Kubernetes. On success the sidecar reads the metrics file (a JSON
// object of numbers) and registers a model version when the spec asks for it.
package training
