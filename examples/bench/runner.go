package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// errFatal is the panic value runner.Fatalf uses to unwind run; main
// recovers it, runs the cleanups and exits non-zero.
var errFatal = errors.New("bench: fatal")

// runner lets the benchmark program use the test harness packages
// (internal/netns, internal/topo), which take a testing.TB for cleanup and
// failure reporting. It implements the methods those packages call; the
// embedded nil testing.TB only satisfies the interface's unexported method,
// so calling anything else panics loudly instead of misbehaving quietly.
type runner struct {
	testing.TB

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	ctx      context.Context
	cancel   context.CancelFunc
}

func newRunner() *runner {
	ctx, cancel := context.WithCancel(context.Background())
	return &runner{ctx: ctx, cancel: cancel}
}

func (r *runner) Helper()      {}
func (r *runner) Name() string { return "bench" }

func (r *runner) Context() context.Context { return r.ctx }

func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *runner) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
func (r *runner) Log(args ...any) { r.Logf("%s", fmt.Sprint(args...)) }

func (r *runner) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
	fmt.Fprintf(os.Stderr, "bench: error: "+format+"\n", args...)
}
func (r *runner) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *runner) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(errFatal)
}
func (r *runner) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// Skipf only happens in RequireRoot (not root, CI unset); for the program
// that is fatal too.
func (r *runner) Skipf(format string, args ...any) { r.Fatalf(format, args...) }
func (r *runner) Skip(args ...any)                 { r.Fatal(args...) }

func (r *runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// close cancels the context and runs the cleanups, last registered first,
// as testing does.
func (r *runner) close() {
	r.cancel()
	for {
		r.mu.Lock()
		n := len(r.cleanups)
		if n == 0 {
			r.mu.Unlock()
			return
		}
		f := r.cleanups[n-1]
		r.cleanups = r.cleanups[:n-1]
		r.mu.Unlock()
		f()
	}
}
