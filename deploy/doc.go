// Package deploy holds what runs Lariat in a cluster: the container image
// (Dockerfile), the Kubernetes manifests (a Kustomize base and a production
// overlay) and the Grafana dashboard. It has no Go API; its tests check the
// manifests against the Kubernetes API types, the rendered routes against the
// gateway's validator, and the dashboard's queries against the metrics a
// running gateway exports.
package deploy
