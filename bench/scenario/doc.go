// Package scenario owns the end-to-end benchmark scenarios of lariat-bench:
// each one starts the real parts as separate processes on 127.0.0.1 (a
// seeded redis-server when features are read, fake model servers with a
// latency distribution and error rate, "lariat serve" with a generated route
// file, and the direct floor of package floor), checks that the gateway and
// the floor do the same work, then sends the same load through both and
// writes their measurements side by side, with ratios and targets, as JSON
// and HTML reports.
//
// The scenarios are fanout2, features+fanout2, lasso and faults; see Names
// and About. Run runs one.
package scenario
