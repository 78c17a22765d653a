// Package cli holds what the sidecar commands (lariat-ingest, lariat-registry,
// lariat-train) share: usage errors and exit codes, flag parsing, the serve
// loop with its graceful shutdown on SIGTERM or SIGINT, and the JSON and table
// output of client verbs.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os/signal"
	"syscall"
	"time"
)

// ErrUsage marks command-line mistakes; ExitCode maps it to exit status 2.
var ErrUsage = errors.New("usage error")

// Usagef returns a usage error (wrapping ErrUsage) with the formatted message.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// ExitCode reports err of the command prog on stderr and returns the process
// exit status: 0 for nil and flag.ErrHelp (nothing reported), 2 for usage
// errors, 1 for anything else.
func ExitCode(prog string, err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", prog, err)
	return 1
}

// ParseFlags parses args into fs. flag.ErrHelp is returned as is; any other
// parse error becomes a usage error.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return Usagef("%v", err)
	}
	return nil
}

// ParseInterspersed parses flags that may come before, between or after the
// positional arguments, and returns the positional arguments. Errors are those
// of ParseFlags.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := ParseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// SignalContext returns a copy of parent that is cancelled on SIGTERM or
// SIGINT; stop releases the signal handler.
func SignalContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(parent, syscall.SIGTERM, syscall.SIGINT)
}

// NewLogger returns the logger of a server command: standard flags plus
// microseconds, no prefix.
func NewLogger(w io.Writer) *log.Logger {
	return log.New(w, "", log.LstdFlags|log.Lmicroseconds)
}

// Listen listens on the TCP address addr given by the flag named flagName
// (written as the user should see it, e.g. "-listen").
func Listen(flagName, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s=%q: %w", flagName, addr, err)
	}
	return ln, nil
}

// Server is a server Serve can run and stop.
type Server interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
}

// ServeOptions configure Serve.
type ServeOptions struct {
	// ShutdownTimeout limits the wait for open requests once ctx ends.
	ShutdownTimeout time.Duration
	// Logger receives one line per step.
	Logger *log.Logger
	// Ready, when set, receives the listen address once the server accepts
	// connections.
	Ready func(addr string)
}

// Serve runs srv on ln until ctx ends, then shuts it down gracefully, waiting
// up to o.ShutdownTimeout for open requests. When that wait runs out and srv
// has a Close() error method, Close drops the remaining connections. Serve
// returns nil after a shutdown, or the error of srv stopping on its own.
func Serve(ctx context.Context, srv Server, ln net.Listener, o ServeOptions) error {
	logger := o.Logger
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Printf("listening on %s", ln.Addr())
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	logger.Printf("shutting down")
	t := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		if c, ok := srv.(interface{ Close() error }); ok {
			logger.Printf("shutdown incomplete (%v); closing open connections", err)
			_ = c.Close()
		} else {
			logger.Printf("shutdown incomplete: %v", err)
		}
	}
	<-serveErr
	logger.Printf("server stopped in %s", time.Since(t))
	return nil
}
