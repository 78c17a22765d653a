// Package bench owns the load generator used to measure the gateway: open-loop
// runs at a fixed request rate (latency measured from each request's scheduled
// send time, so a stalled server cannot hide its stall), closed-loop runs with a
// fixed number of connections, HDR latency histograms, a per-second timeline,
// and the JSON and self-contained HTML reports built from the results.
//
// A run is described by a Config and executed by Run, which returns a Result.
// Several results are put side by side, with their ratios to a baseline run, by
// NewReport; runs of the same load are combined by Merge.
//
// The end-to-end scenarios built on it live in the subpackages: scenario
// (the runner), fakemodel (the fake model servers) and floor (the direct
// floor the gateway is compared with).
package bench
