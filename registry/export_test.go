package registry

// RefreshErrors returns the refresh errors r counted.
func RefreshErrors(r *Resolver) uint64 {
	return r.metrics.refreshErrors.Get()
}
