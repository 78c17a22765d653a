// Package tasks owns the task kinds a route's graph is built from, the
// per-request Exchange they read and write, the templates their inputs
// are written in, and the services kinds share (Env).
//
// A kind registers its name, its Inputs type and a constructor (Register);
// a route file names the kind in a task's `type`. The constructor decodes
// the task's `inputs` into the Inputs type with Spec.Decode, compiles its
// templates with Spec.Template (which records the tasks it depends on),
// asks for the services it needs by name (Service.Need) and returns a Task
// that the router runs once per request, possibly concurrently. A Task that
// implements Describer says what it calls or reads in the graph view. The
// route-file JSON Schema is generated from the Inputs types (see
// internal/schemagen), so a kind is added in its own file alone.
package tasks
