// Package demo owns Lariat's embedded default: example model servers that
// compute real answers from the request (a logistic-regression driver
// ranking and a fraud score), the example routes that call them, and the
// host overrides that point the routes at the in-process servers.
package demo
