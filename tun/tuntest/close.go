package tuntest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// testClose checks Close: it unblocks pending calls promptly, every method
// fails with ErrClosed afterwards, and it is idempotent.
func (s *suite) testClose(t *testing.T) {
	t.Run("UnblocksPollRecvMany", func(t *testing.T) {
		h, _ := s.harness(t)
		done := make(chan error, 1)
		go func() { done <- pollUntilErr(context.Background(), h.Dev) }()
		time.Sleep(quietPeriod)
		if err := h.Dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := await(t, done, promptTimeout, "PollRecvMany after Close"); !errors.Is(err, h.ErrClosed) {
			t.Errorf("blocked PollRecvMany after Close: %v, want %v", err, h.ErrClosed)
		}
	})

	t.Run("UnblocksSendReady", func(t *testing.T) {
		h, b := s.harness(t)
		f := h.families()[0]
		// Fill the device until SendReady would block (a device with
		// backpressure) or give up after a bounded number of batches (a
		// device that never applies it).
		bs := h.Dev.BatchSize()
		batch := make([][]byte, bs)
		for i := range batch {
			batch[i] = b.in(f, kindUDP, 0, uint32(i), 100)
		}
		full := false
		for range 256 {
			// Full means SendReady was seen blocking twice in a row; a
			// single observation could be a goroutine that was not
			// scheduled in time on a loaded machine.
			if blocks(t, h.Dev) && blocks(t, h.Dev) {
				full = true
				break
			}
			if _, err := h.Dev.Send(batch, 0); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}
		if !full {
			t.Log("device never applied backpressure; checking SendReady after Close only")
		}
		done := make(chan error, 1)
		go func() { done <- h.Dev.SendReady(context.Background()) }()
		if full {
			select {
			case err := <-done:
				t.Fatalf("SendReady returned %v on a full device before Close", err)
			case <-time.After(quietPeriod):
			}
		}
		if err := h.Dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		err := await(t, done, promptTimeout, "SendReady after Close")
		if full && !errors.Is(err, h.ErrClosed) {
			t.Errorf("blocked SendReady after Close: %v, want %v", err, h.ErrClosed)
		}
		if !full && err != nil && !errors.Is(err, h.ErrClosed) {
			t.Errorf("SendReady racing Close: %v, want nil or %v", err, h.ErrClosed)
		}
	})

	t.Run("AfterClose", func(t *testing.T) {
		h, b := s.harness(t)
		f := h.families()[0]
		// Pending data does not keep the device readable after Close.
		inject(t, h, [][]byte{b.out(f, kindUDP, 0, 0, 100)})
		if err := h.Dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		bufs, sizes := makeBufs(2, 16, b.mtu)
		if n, err := h.Dev.PollRecvMany(context.Background(), bufs, sizes, 16); n != 0 || !errors.Is(err, h.ErrClosed) {
			t.Errorf("PollRecvMany after Close = %d, %v; want 0, %v", n, err, h.ErrClosed)
		}
		if err := h.Dev.SendReady(context.Background()); !errors.Is(err, h.ErrClosed) {
			t.Errorf("SendReady after Close = %v; want %v", err, h.ErrClosed)
		}
		pkt := b.in(f, kindUDP, 0, 0, 100)
		if n, err := h.Dev.Send([][]byte{pkt}, 0); n != 0 || !errors.Is(err, h.ErrClosed) {
			t.Errorf("Send after Close = %d, %v; want 0, %v", n, err, h.ErrClosed)
		}
		// These must not panic after Close.
		_, _, _ = h.Dev.BatchSize(), h.Dev.MTU(), h.Dev.Name()
	})

	t.Run("Idempotent", func(t *testing.T) {
		h, _ := s.harness(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- h.Dev.Close()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent Close: %v", err)
			}
		}
		if err := h.Dev.Close(); err != nil {
			t.Errorf("Close after Close: %v", err)
		}
	})
}

// blocks reports whether SendReady is still blocked 50ms after it was
// called; it then cancels the call, which must return promptly with
// context.Canceled (or nil if room appeared meanwhile).
func blocks(t *testing.T, d Device) bool {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan error, 1)
	go func() { ch <- d.SendReady(ctx) }()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("SendReady: %v", err)
		}
		return false
	case <-time.After(quietPeriod):
	}
	cancel()
	err := await(t, ch, promptTimeout, "SendReady after cancel")
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("blocked SendReady after cancel: %v, want context.Canceled", err)
	}
	return err != nil
}
