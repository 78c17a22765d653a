package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os/signal"
	"syscall"
	"time"

	"github.com/lariat-gw/lariat/internal/accept"
)

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
	ln = accept.Retrying(ln, func(err error, wait time.Duration) {
		if accept.Notable(wait) {
			logger.Printf("cannot accept connections (%v); trying again in %s", err, wait)
		}
	})
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

// Sidecar is the serve command of a sidecar binary. Run gives every
// sidecar the same skeleton: the flags -listen and -shutdown-timeout next
// to the command's own, no positional arguments, a logger on standard
// error, Open with its duration logged, Serve until SIGTERM or SIGINT, then
// Close with its duration logged.
type Sidecar struct {
	// Listen is the default of -listen.
	Listen string
	// Flags, when set, defines the command's own flags on fs.
	Flags func(fs *flag.FlagSet)
	// Open opens what the server needs and builds it, within OpenTimeout;
	// ctx also ends on SIGTERM or SIGINT.
	Open func(ctx context.Context, logger *log.Logger) (*Opened, error)
}

// Opened is what Sidecar.Open returns.
type Opened struct {
	Server Server
	// Ready says what Open did; it is logged with the time Open took
	// ("store opened").
	Ready string
	// Close, when set, releases what Open opened once the server has
	// stopped. Closed is logged with the time Close took ("store closed").
	Close  func() error
	Closed string
}

// OpenTimeout bounds Sidecar.Open.
const OpenTimeout = 30 * time.Second

// Run parses args, then opens, serves and closes as Sidecar describes,
// until ctx ends or a signal comes. ready, when set, receives the listen
// address once the server accepts connections.
func (s Sidecar) Run(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", s.Listen, "TCP address to serve the API on")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "how long to wait for open requests on SIGTERM")
	if s.Flags != nil {
		s.Flags(fs)
	}
	pos, err := ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return Usagef("serve takes no arguments, got %q", pos)
	}
	logger := NewLogger(stderr)
	ctx, stop := SignalContext(ctx)
	defer stop()

	start := time.Now()
	openCtx, cancel := context.WithTimeout(ctx, OpenTimeout)
	o, err := s.Open(openCtx, logger)
	cancel()
	if err != nil {
		return err
	}
	if o.Close != nil {
		defer func() {
			t := time.Now()
			if err := o.Close(); err != nil {
				logger.Printf("%s with an error in %s: %v", o.Closed, time.Since(t), err)
				return
			}
			logger.Printf("%s in %s", o.Closed, time.Since(t))
		}()
	}
	logger.Printf("%s in %s", o.Ready, time.Since(start))

	ln, err := Listen("-listen", *listen)
	if err != nil {
		return err
	}
	return Serve(ctx, o.Server, ln, ServeOptions{ShutdownTimeout: *shutdownTimeout, Logger: logger, Ready: ready})
}
