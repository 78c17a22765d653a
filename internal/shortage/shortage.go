// Package shortage tells the errors that mean this machine is short of
// what a connection needs, rather than that a peer failed.
package shortage

import (
	"errors"
	"syscall"
)

// Local reports whether err is the process or the system out of file
// descriptors (EMFILE, ENFILE), out of local ports (EADDRNOTAVAIL), or the
// kernel short of buffers (ENOBUFS, ENOMEM): shortages that pass.
func Local(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM)
}
