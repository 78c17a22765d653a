// Package examples holds the example training job (trainer), the example model
// server (modelserver), the model they share (logreg) and the synthetic data they
// use (exampledata). Its test walks the whole loop: features ingested into Redis,
// a training job submitted to lariat-train, the model registered in
// lariat-registry and aliased production, a model server started on the
// artifact, and a gateway route naming the model driver-rank@production serving
// predictions from it, every answer recorded in a prediction log. Outcome labels
// keyed by the answers' request ids are then joined to the features as served
// (training/dataset), a second version is trained on that set, registered,
// aliased production, and takes over the route.
package examples
