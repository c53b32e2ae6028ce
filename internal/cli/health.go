package cli

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// HealthServer serves /healthz (always 200 while the process runs) and
// /readyz (200 when ready() reports true, else 503), as Firezone's
// --health-check-addr does.
type HealthServer struct {
	srv *http.Server
	ln  net.Listener
}

// StartHealth listens on addr and serves in the background.
func StartHealth(addr string, ready func() bool) (*HealthServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && ready() {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("ready\n"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
	})
	h := &HealthServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	go func() {
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener is ours; Serve only fails when it is closed
		}
	}()
	return h, nil
}

// Addr is the bound address.
func (h *HealthServer) Addr() net.Addr { return h.ln.Addr() }

// Close stops the server.
func (h *HealthServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return h.srv.Shutdown(ctx)
}
