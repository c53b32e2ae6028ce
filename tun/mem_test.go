package tun

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gozone/gozone/tun/tuntest"
)

// memHarness wires one end of a fresh pair into the contract suite; the
// other end is the far side, carrying packets byte for byte.
func memHarness(cfg MemConfig) func(t *testing.T) *tuntest.Harness {
	return func(t *testing.T) *tuntest.Harness {
		a, b := NewMemPair(cfg)
		t.Cleanup(func() { a.Close(); b.Close() })
		return &tuntest.Harness{
			Dev:       a,
			ErrClosed: ErrClosed,
			V4:        tuntest.Addrs{Local: netip.MustParseAddr("100.64.0.1"), Remote: netip.MustParseAddr("10.0.0.1")},
			V6:        tuntest.Addrs{Local: netip.MustParseAddr("fd00::1"), Remote: netip.MustParseAddr("fd00:1::1")},
			Raw:       true,
			Inject: func(pkts [][]byte) error {
				return sendAll(b, pkts)
			},
			Collect: func(ctx context.Context) ([]byte, error) {
				bufs, sizes := [][]byte{make([]byte, b.MTU())}, []int{0}
				if _, err := b.PollRecvMany(ctx, bufs, sizes, 0); err != nil {
					return nil, err
				}
				return bufs[0][:sizes[0]], nil
			},
		}
	}
}

func sendAll(t *MemTun, pkts [][]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := t.SendReady(ctx); err != nil {
		return err
	}
	n, err := t.Send(pkts, 0)
	if err == nil && n != len(pkts) {
		err = errors.New("peer did not accept all packets")
	}
	return err
}

func TestMemContract(t *testing.T) {
	tuntest.Run(t, memHarness(MemConfig{}))
}

// TestMemContractSmall runs the suite with a small batch and the smallest
// queue, so backpressure and wrap-around are exercised constantly.
func TestMemContractSmall(t *testing.T) {
	tuntest.Run(t, memHarness(MemConfig{BatchSize: 7, QueueDepth: 7, MTU: 1500, Name: "small"}))
}

var (
	src4 = netip.MustParseAddrPort("10.0.0.1:1000")
	dst4 = netip.MustParseAddrPort("10.0.0.2:2000")
)

func TestMemDefaults(t *testing.T) {
	a, b := NewMemPair(MemConfig{BatchSize: 1000})
	if a.BatchSize() != MaxBatch || a.MTU() != 1280 || a.Name() != "mem-a" || b.Name() != "mem-b" {
		t.Errorf("defaults: batch %d mtu %d names %q %q", a.BatchSize(), a.MTU(), a.Name(), b.Name())
	}
	if a.Peer() != b || b.Peer() != a {
		t.Error("Peer() does not return the other end")
	}
}

func TestMemDropsAndCounts(t *testing.T) {
	a, b := NewMemPair(MemConfig{BatchSize: 4, QueueDepth: 4, MTU: 1280})
	defer a.Close()
	defer b.Close()
	ok := tuntest.UDP(src4, dst4, make([]byte, 100))
	big := tuntest.UDP(src4, dst4, make([]byte, 1281-28))
	bad := []byte{0x12, 0x34}
	n, err := a.Send([][]byte{ok, big, bad, {}, ok}, 0)
	if n != 2 || err != nil {
		t.Fatalf("Send = %d, %v; want 2, nil", n, err)
	}
	// Two slots left: the third packet finds the queue full.
	if n, _ := a.Send([][]byte{ok, ok, ok}, 0); n != 2 {
		t.Fatalf("Send into a queue with 2 free slots accepted %d", n)
	}
	st := a.Stats()
	if st.Sent != 4 || st.DroppedOversize != 1 || st.DroppedMalformed != 2 || st.DroppedFull != 1 {
		t.Errorf("stats after sends: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := a.SendReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("SendReady on a full queue = %v, want DeadlineExceeded", err)
	}
	cancel()

	// A buffer too small for a packet: that packet is dropped, not
	// truncated, and the next one is tried in the same buffer.
	bufs, sizes := [][]byte{make([]byte, 2000), make([]byte, 50)}, make([]int, 2)
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	n, err = b.PollRecvMany(rctx, bufs, sizes, 0)
	if n != 1 || err != nil || sizes[0] != len(ok) {
		t.Errorf("PollRecvMany = %d, %v, sizes %v; want 1 packet of %d", n, err, sizes, len(ok))
	}
	if st := b.Stats(); st.DroppedTooSmall != 3 || st.Received != 1 {
		t.Errorf("receiver stats: %+v", st)
	}

	// Peer closed: sends are dropped and counted, SendReady does not block.
	b.Close()
	if err := a.SendReady(context.Background()); err != nil {
		t.Errorf("SendReady with closed peer = %v", err)
	}
	if n, err := a.Send([][]byte{ok}, 0); n != 0 || err != nil {
		t.Errorf("Send with closed peer = %d, %v", n, err)
	}
	if st := a.Stats(); st.DroppedPeerClosed != 1 {
		t.Errorf("DroppedPeerClosed = %d", st.DroppedPeerClosed)
	}
}

func TestMemErrClosedIsOSErrClosed(t *testing.T) {
	if !errors.Is(ErrClosed, os.ErrClosed) {
		t.Error("ErrClosed does not match os.ErrClosed")
	}
}

// memBatch returns BatchSize packets of size bytes each at offset.
func memBatch(n, offset, size int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		pkt := tuntest.UDP(src4, dst4, make([]byte, size-28))
		bufs[i] = append(make([]byte, offset), pkt...)
	}
	return bufs
}

// TestMemAllocs checks the hot path allocates nothing: a full batch sent and
// read back, with a cancellable context.
func TestMemAllocs(t *testing.T) {
	a, b := NewMemPair(MemConfig{})
	defer a.Close()
	defer b.Close()
	const off = 16
	out := memBatch(MaxBatch, off, 1280)
	in := make([][]byte, MaxBatch)
	for i := range in {
		in[i] = make([]byte, off+1280)
	}
	sizes := make([]int, MaxBatch)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	allocs := testing.AllocsPerRun(200, func() {
		if err := a.SendReady(ctx); err != nil {
			t.Fatal(err)
		}
		if n, _ := a.Send(out, off); n != MaxBatch {
			t.Fatalf("Send accepted %d", n)
		}
		for got := 0; got < MaxBatch; {
			n, err := b.PollRecvMany(ctx, in, sizes, off)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch of %d, want 0", allocs, MaxBatch)
	}
}

// BenchmarkMemPair measures throughput of one sender and one reader
// goroutine moving full batches of 1280-byte packets.
func BenchmarkMemPair(b *testing.B) {
	a, z := NewMemPair(MemConfig{})
	defer a.Close()
	defer z.Close()
	const off, size = 16, 1280
	out := memBatch(MaxBatch, off, size)
	total := b.N * MaxBatch
	done := make(chan int)
	go func() {
		in := make([][]byte, MaxBatch)
		for i := range in {
			in[i] = make([]byte, off+size)
		}
		sizes := make([]int, MaxBatch)
		got := 0
		for got < total {
			n, err := z.PollRecvMany(context.Background(), in, sizes, off)
			if err != nil {
				break
			}
			got += n
		}
		done <- got
	}()
	b.SetBytes(MaxBatch * size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := a.SendReady(context.Background()); err != nil {
			b.Fatal(err)
		}
		a.Send(out, off)
	}
	got := <-done
	b.StopTimer()
	if got != total {
		b.Fatalf("received %d of %d", got, total)
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(total)/sec, "pkts/s")
	b.ReportMetric(float64(total)*size*8/sec/1e9, "Gbit/s")
}
