// Package registry owns the model registry: a service that speaks the MLflow Model
// Registry REST API 2.0 (registered models, model versions, stages, aliases, tags)
// on top of a transactional Store (an embedded bbolt file or PostgreSQL), the Client
// that talks to it, and the Resolver the gateway uses to map model references such as
// "eta@champion" or "eta/3" to a serving endpoint.
//
// A model version carries, besides MLflow's fields, the gateway's own fields
// (ignored by MLflow clients): serving_endpoint, training_job, params (a JSON object of
// string values), metrics (a JSON object of number values) and feature_views (a list of
// feature view names).
//
// Training runs that lariat-train records (POST runs/record, Lariat's own call) are
// served through MLflow's tracking reads: runs/get, runs/search, metrics/get-history,
// experiments/get-by-name and experiments/get (an experiment is the name runs were
// recorded under; its id is derived from the name, "0" for "Default"), and
// logged-models/search (always empty), so that MLflow's client can register a model
// from a run with mlflow.register_model("runs:/<run id>/...", name).
package registry
