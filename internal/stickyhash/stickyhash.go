// Package stickyhash owns the hash of sticky keys (traffic split arms,
// prediction log sampling): stable across processes and versions, so that
// replicas decide alike for every key.
package stickyhash

// Sum64 hashes b with FNV-1a from offset, then a 64-bit finalizer, so that
// the low bits (used by a modulo) are well mixed. Different offsets give
// independent decisions for the same key.
func Sum64(offset uint64, b []byte) uint64 {
	h := offset
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
