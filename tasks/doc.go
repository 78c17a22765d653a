// Package tasks owns the task kinds a route's graph is built from, the
// per-request Exchange they read and write, and the templates their inputs
// are written in.
//
// A kind registers a constructor by name (Register); a route file names the
// kind in a task's `type`. The constructor decodes the task's `inputs` into
// its own typed settings with Spec.Decode, compiles its templates with
// Spec.Template (which records the tasks it depends on) and returns a Task
// that the router runs once per request, possibly concurrently.
package tasks
