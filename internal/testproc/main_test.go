package testproc

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// fakeTB stands in for a test whose failure is the expected outcome: its
// Fatal records the message and ends the goroutine, as testing's does.
// Everything else goes to the real test.
type fakeTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatal(args ...any) { f.fail(fmt.Sprint(args...)) }

func (f *fakeTB) Fatalf(format string, args ...any) { f.fail(fmt.Sprintf(format, args...)) }

func (f *fakeTB) fail(msg string) {
	f.mu.Lock()
	f.msg = msg
	f.mu.Unlock()
	runtime.Goexit()
}

// fatalOf runs fn on its own goroutine with a fakeTB and returns the
// message it failed with, "" if it did not fail.
func fatalOf(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.msg
}

// wantFatal fails unless fn fails with a message containing want.
func wantFatal(t *testing.T, want string, fn func(tb testing.TB)) {
	t.Helper()
	if msg := fatalOf(t, fn); !strings.Contains(msg, want) {
		t.Fatalf("failure message %q, want one containing %q", msg, want)
	}
}

// child returns the path of testdata/child, built once.
func child(t *testing.T) string {
	t.Helper()
	return Build(t, "./testdata/child")
}
