// Package registry owns what talks to the model registry: the wire types of the
// MLflow Model Registry REST API 2.0 (registered models, model versions, stages,
// aliases, tags) and of the training runs lariat-train records, the Client that
// calls a registry server, and the Resolver the gateway uses to map model
// references such as "eta@champion" or "eta/3" to a serving endpoint.
//
// The server and its stores (an embedded bbolt file or PostgreSQL) live in
// registry/server, which only lariat-registry links.
//
// A model version carries, besides MLflow's fields, the gateway's own fields
// (ignored by MLflow clients): serving_endpoint, training_job, params (a JSON object of
// string values), metrics (a JSON object of number values) and feature_views (a list of
// feature view names).
package registry
