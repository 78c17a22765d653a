package config

import _ "embed"

// route.schema.json is generated from the Go types of route files and of
// the registered task kinds' inputs; the config tests fail when it is
// stale.
//
//go:generate go run ../internal/schemagen/cmd/schemagen -o route.schema.json

//go:embed route.schema.json
var routeSchema string

// SchemaID is the $id of the route-file JSON Schema.
const SchemaID = "https://github.com/lariat-gw/lariat/raw/main/config/route.schema.json"

// SchemaTitle is the title of the route-file JSON Schema.
const SchemaTitle = "Lariat route"

// Schema returns the JSON Schema (draft 2020-12) of route files, for
// editors and other tools. It describes the keys of a route, of a task and
// of each task kind's inputs; `lariat validate` remains the authority on
// what a schema cannot express (templates, references between tasks,
// cycles, feature views). The caller owns the returned slice.
func Schema() []byte { return []byte(routeSchema) }
