// Package config owns route files: it decodes route YAML strictly with
// file:line:col positions on every error, applies defaults, checks the
// structure of a route, and loads folders of route files.
//
// Kind-specific settings (a task's inputs) are kept as raw YAML nodes and
// decoded by the task kind with Decode, so every kind gets the same strict,
// positioned decoding. The JSON Schema of route files (Schema) is
// generated from the Go types of this package and of the registered kinds'
// inputs: run `go generate ./config` after changing them.
package config
