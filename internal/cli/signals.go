package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext returns a context cancelled on the first SIGINT or SIGTERM,
// the binaries' orderly-shutdown trigger (goodbye to peers, close, exit 0).
// A second signal gets Go's default behaviour (immediate exit) once stop
// has been called.
func SignalContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}
