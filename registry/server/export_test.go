package server

// MaxTagKeyLen is the longest tag key the service accepts.
const MaxTagKeyLen = maxTagKeyLen
