// Package featurefetch reads online features stored in Feast's Redis layout.
//
// It owns the feature-view definitions file (LoadViews), the byte layout shared
// with Feast and with the ingestion sidecar (entity keys, field hashes, Value and
// Timestamp protobufs, see layout.go), the Store implementations (Redis through
// rueidis and an in-memory store with the same layout), and compiled read plans
// (NewPlan, Plan.Fetch) that read every requested feature of every entity in one
// round trip and append the result as JSON.
//
// Layout, per (project, entity key):
//
//	key   = entity key serialization v3 ++ project name
//	field = murmur3_32("<view>:<feature>") as 4 little-endian bytes -> feast.types.Value
//	field = "_ts:<view>"                                              -> google.protobuf.Timestamp
package featurefetch
