// Package gateway owns Lariat's servers: the traffic listener that matches
// requests to routes and serves them, the admin listener (/healthz,
// /readyz, /metrics, /routes), the request limits, and graceful shutdown.
package gateway
