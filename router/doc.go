// Package router matches requests to routes and runs a route's task graph.
//
// Compile turns a decoded route into a Plan once, when the route loads:
// task kinds are constructed, templates compiled, dependencies resolved and
// checked for cycles, and output paths turned into a response layout. Per
// request, Plan.Serve starts every task whose dependencies are done (a task
// starts the moment its last dependency finishes), bounds everything by the
// route deadline, and assembles one JSON response from the task outputs.
// Per-request state is pooled.
package router
