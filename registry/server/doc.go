// Package server owns the model registry service: it speaks the MLflow Model
// Registry REST API 2.0 (registered models, model versions, stages, aliases,
// tags; the wire types are package registry's) on top of a transactional Store
// (an embedded bbolt file or PostgreSQL).
//
// Training runs that lariat-train records (POST runs/record, Lariat's own call) are
// served through MLflow's tracking reads: runs/get, runs/search, metrics/get-history,
// experiments/get-by-name and experiments/get (an experiment is the name runs were
// recorded under; its id is derived from the name, "0" for "Default"), and
// logged-models/search (always empty), so that MLflow's client can register a model
// from a run with mlflow.register_model("runs:/<run id>/...", name).
package server
