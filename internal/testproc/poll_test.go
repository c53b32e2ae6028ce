package testproc

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	calls := 0
	if err := Poll(Timeout, time.Millisecond, func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("try %d", calls)
		}
		return nil
	}); err != nil || calls != 3 {
		t.Fatalf("Poll = %v after %d calls", err, calls)
	}

	calls = 0
	start := time.Now()
	err := Poll(50*time.Millisecond, 10*time.Millisecond, func() error {
		calls++
		return fmt.Errorf("try %d", calls)
	})
	if err == nil || err.Error() != fmt.Sprintf("try %d", calls) || calls < 2 || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("Poll = %v after %d calls in %v, want the last error after the timeout", err, calls, time.Since(start))
	}

	sentinel := errors.New("gone")
	calls = 0
	err = Poll(Timeout, time.Millisecond, func() error {
		calls++
		return Abort(fmt.Errorf("process: %w", sentinel))
	})
	if !errors.Is(err, sentinel) || calls != 1 {
		t.Fatalf("Poll with Abort = %v after %d calls", err, calls)
	}
	if err := Poll(Timeout, time.Millisecond, func() error { return Abort(nil) }); err == nil {
		t.Fatal("Abort(nil) succeeded")
	}
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, Timeout, func() error {
		if n++; n < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	wantFatal(t, "resolv.conf not rewritten", func(tb testing.TB) {
		Eventually(tb, 100*time.Millisecond, func() error { return errors.New("resolv.conf not rewritten") })
	})
}
