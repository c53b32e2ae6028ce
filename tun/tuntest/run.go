package tuntest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Timeouts are generous on purpose: the suite must pass on a loaded 2-core
// CI machine. Nothing asserts that something happens quickly except
// "promptly", which is seconds.
const (
	dataTimeout   = 30 * time.Second // for expected packets to arrive
	promptTimeout = 10 * time.Second // for blocked calls to return after Close or cancel
	quietPeriod   = 50 * time.Millisecond
)

// offsets the suite reads and writes at: 0, wireguard-go's
// MessageTransportHeaderSize (16) and that plus a virtio-net header (26).
var offsets = []int{0, 16, 26}

// Run runs the whole contract suite as subtests of t. newHarness is called
// once per subtest and must return a fresh, open device (see Harness).
func Run(t *testing.T, newHarness func(t *testing.T) *Harness) {
	t.Helper()
	s := &suite{newHarness: newHarness}
	t.Run("Basics", s.testBasics)
	t.Run("SinglePacket", s.testSinglePacket)
	t.Run("Batch", s.testBatch)
	t.Run("PartialReads", s.testPartialReads)
	t.Run("Order", s.testOrder)
	t.Run("BufferTooSmall", s.testBufferTooSmall)
	t.Run("BlocksUntilData", s.testBlocksUntilData)
	t.Run("ContextCancel", s.testContextCancel)
	t.Run("ConcurrentSend", s.testConcurrentSend)
	t.Run("ConcurrentRecv", s.testConcurrentRecv)
	t.Run("Stack", s.testStack)
	t.Run("Close", s.testClose)
}

type suite struct {
	newHarness func(t *testing.T) *Harness
}

// harness makes and checks a fresh harness for one subtest.
func (s *suite) harness(t *testing.T) (*Harness, *builder) {
	t.Helper()
	h := s.newHarness(t)
	if h == nil || h.Dev == nil || h.ErrClosed == nil || h.Inject == nil || h.Collect == nil {
		t.Fatal("tuntest: harness must set Dev, ErrClosed, Inject and Collect")
	}
	if len(h.families()) == 0 {
		t.Fatal("tuntest: harness must set V4 or V6")
	}
	return h, newBuilder(h)
}

// makeBufs returns n buffers with room for offset+room bytes.
func makeBufs(n, offset, room int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, offset+room)
	}
	return bufs, make([]int, n)
}

// inject calls Inject in chunks of at most BatchSize.
func inject(t *testing.T, h *Harness, pkts [][]byte) {
	t.Helper()
	bs := h.Dev.BatchSize()
	for len(pkts) > 0 {
		n := min(len(pkts), bs)
		if err := h.Inject(pkts[:n]); err != nil {
			t.Fatalf("harness Inject: %v", err)
		}
		pkts = pkts[n:]
	}
}

// readOut reads from Dev.PollRecvMany with bufs at offset until every
// expected packet arrived, checking each call's results.
func readOut(t *testing.T, h *Harness, e *expect, bufs [][]byte, offset int) {
	t.Helper()
	if err := readOutErr(h, e, bufs, offset, dataTimeout); err != nil {
		t.Fatal(err)
	}
}

func readOutErr(h *Harness, e *expect, bufs [][]byte, offset int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sizes := make([]int, len(bufs))
	for !e.done() {
		n, err := h.Dev.PollRecvMany(ctx, bufs, sizes, offset)
		if err != nil {
			return fmt.Errorf("PollRecvMany: %v (still missing %s)", err, e.missing())
		}
		if n < 1 || n > len(bufs) || n > h.Dev.BatchSize() {
			return fmt.Errorf("PollRecvMany returned n=%d with nil error for %d bufs (BatchSize %d)", n, len(bufs), h.Dev.BatchSize())
		}
		for i := range n {
			sz := sizes[i]
			if sz <= 0 || offset+sz > len(bufs[i]) {
				return fmt.Errorf("PollRecvMany: sizes[%d]=%d does not fit buffer of %d at offset %d", i, sz, len(bufs[i]), offset)
			}
			if err := e.offer(bufs[i][offset : offset+sz]); err != nil {
				return fmt.Errorf("PollRecvMany packet %d of %d: %v", i, n, err)
			}
		}
	}
	return nil
}

// sendIn sends pkts through Dev.Send at offset in batches of at most
// BatchSize, after SendReady, and requires every packet to be accepted.
// Bytes in front of offset are filled with garbage the device may use.
func sendIn(t *testing.T, h *Harness, pkts [][]byte, offset int) {
	t.Helper()
	if err := sendInErr(h, pkts, offset); err != nil {
		t.Fatal(err)
	}
}

func sendInErr(h *Harness, pkts [][]byte, offset int) error {
	bs := h.Dev.BatchSize()
	bufs := make([][]byte, 0, bs)
	for len(pkts) > 0 {
		n := min(len(pkts), bs)
		bufs = bufs[:0]
		for _, p := range pkts[:n] {
			b := make([]byte, offset+len(p))
			for j := range offset {
				b[j] = 0xa5
			}
			copy(b[offset:], p)
			bufs = append(bufs, b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), dataTimeout)
		err := h.Dev.SendReady(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("SendReady: %v", err)
		}
		got, err := h.Dev.Send(bufs, offset)
		if err != nil {
			return fmt.Errorf("Send of %d packets: %v", n, err)
		}
		if got != n {
			return fmt.Errorf("Send accepted %d of %d packets after SendReady", got, n)
		}
		pkts = pkts[n:]
	}
	return nil
}

// collectIn calls Collect until every expected packet arrived.
func collectIn(t *testing.T, h *Harness, e *expect) {
	t.Helper()
	if err := collectInErr(h, e); err != nil {
		t.Fatal(err)
	}
}

func collectInErr(h *Harness, e *expect) error {
	ctx, cancel := context.WithTimeout(context.Background(), dataTimeout)
	defer cancel()
	for !e.done() {
		pkt, err := h.Collect(ctx)
		if err != nil {
			return fmt.Errorf("harness Collect: %v (still missing %s)", err, e.missing())
		}
		if err := e.offer(pkt); err != nil {
			return fmt.Errorf("Collect: %v", err)
		}
	}
	return nil
}

// pollUntilErr calls PollRecvMany until it returns an error, ignoring
// packets (a real stack may emit traffic of its own), and returns that
// error. Every successful call must return n >= 1. It gives up after 1000
// calls.
func pollUntilErr(ctx context.Context, d Device) error {
	bufs, sizes := makeBufs(4, 16, d.MTU())
	for range 1000 {
		n, err := d.PollRecvMany(ctx, bufs, sizes, 16)
		if err != nil {
			return err
		}
		if n < 1 || n > len(bufs) {
			return fmt.Errorf("PollRecvMany returned n=%d with nil error", n)
		}
	}
	return errors.New("PollRecvMany kept returning packets")
}

// await waits for a result from ch for at most d.
func await[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		panic("unreachable")
	}
}
