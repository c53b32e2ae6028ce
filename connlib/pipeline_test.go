package connlib_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib"
	"github.com/gozone/gozone/tun"
)

// dropHook drops packets whose last byte is 0xdd in either direction and
// marks passing packets by setting their last byte to 0xaa (to prove the
// hook sees the same buffer that continues on its way).
type dropHook struct{}

func (dropHook) FromTun(p []byte) connlib.Verdict { return mark(p) }
func (dropHook) ToTun(p []byte) connlib.Verdict   { return mark(p) }

func mark(p []byte) connlib.Verdict {
	if p[len(p)-1] == 0xdd {
		return connlib.Drop
	}
	p[len(p)-1] = 0xaa
	return connlib.Pass
}

// pkt builds a minimal IPv4-looking packet of n bytes ending in last.
func pkt(n int, last byte) []byte {
	b := make([]byte, n)
	b[0] = 0x45
	b[2], b[3] = byte(n>>8), byte(n)
	b[n-1] = last
	return b
}

func withOffset(p []byte, off int) []byte {
	b := make([]byte, off+len(p))
	copy(b[off:], p)
	return b
}

func newBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

func TestPipelineReadRunsHookAndInjects(t *testing.T) {
	a, b := tun.NewMemPair(tun.MemConfig{})
	p := connlib.NewPipeline(a, dropHook{})
	defer p.Close()
	defer b.Close()

	const off = 16
	if _, err := b.Send([][]byte{withOffset(pkt(40, 1), off), withOffset(pkt(40, 0xdd), off)}, off); err != nil {
		t.Fatal(err)
	}
	bufs, sizes := newBufs(8, 1500)
	n, err := p.Read(bufs, sizes, off)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || sizes[0] != 40 || sizes[1] != 0 {
		t.Fatalf("read n=%d sizes=%v, want 2 packets with the second dropped", n, sizes[:n])
	}
	if bufs[0][off+39] != 0xaa {
		t.Fatalf("hook did not see the packet in place")
	}
	if s := p.Stats(); s.FromTun != 2 || s.FromTunDropped != 1 {
		t.Fatalf("stats %+v", s)
	}

	// A Read blocked on an empty Tun is woken by an injection.
	done := make(chan int, 1)
	go func() {
		bufs, sizes := newBufs(8, 1500)
		n, err := p.Read(bufs, sizes, off)
		if err != nil || n != 1 || sizes[0] != 60 || bufs[0][off+59] != 7 {
			done <- -1
			return
		}
		done <- n
	}()
	time.Sleep(50 * time.Millisecond)
	if !p.InjectToPeer(pkt(60, 7)) {
		t.Fatal("inject refused")
	}
	select {
	case n := <-done:
		if n != 1 {
			t.Fatalf("injected read failed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocked Read was not woken by InjectToPeer")
	}
}

func TestPipelineWriteRunsHook(t *testing.T) {
	a, b := tun.NewMemPair(tun.MemConfig{})
	p := connlib.NewPipeline(a, dropHook{})
	defer p.Close()
	defer b.Close()

	const off = 16
	in := [][]byte{withOffset(pkt(40, 0xdd), off), withOffset(pkt(41, 2), off), withOffset(pkt(42, 0xdd), off)}
	n, err := p.Write(in, off)
	if err != nil || n != 3 {
		t.Fatalf("write = %d, %v", n, err)
	}
	bufs, sizes := newBufs(8, 1500)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := b.PollRecvMany(ctx, bufs, sizes, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got != 1 || sizes[0] != 41 || bufs[0][40] != 0xaa {
		t.Fatalf("peer got %d packets sizes=%v, want only the 41-byte one, marked", got, sizes[:got])
	}
	if s := p.Stats(); s.ToTun != 3 || s.ToTunDropped != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPipelineCloseUnblocksRead(t *testing.T) {
	a, b := tun.NewMemPair(tun.MemConfig{})
	defer b.Close()
	p := connlib.NewPipeline(a, nil)
	errc := make(chan error, 1)
	go func() {
		bufs, sizes := newBufs(4, 1500)
		_, err := p.Read(bufs, sizes, 16)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close = %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := p.Write([][]byte{pkt(40, 1)}, 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close = %v", err)
	}
	if p.InjectToPeer(pkt(40, 1)) {
		t.Fatal("inject after close accepted")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestPipelineWriteAllocs(t *testing.T) {
	a, b := tun.NewMemPair(tun.MemConfig{QueueDepth: 1 << 16})
	p := connlib.NewPipeline(a, dropHook{})
	defer p.Close()
	defer b.Close()
	in := make([][]byte, 64)
	for i := range in {
		in[i] = withOffset(pkt(100, 1), 16)
	}
	bufs, sizes := newBufs(128, 1500)
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := p.Write(in, 16); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for got := 0; got < len(in); {
			n, err := b.PollRecvMany(ctx, bufs, sizes, 0)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs > 0 {
		t.Fatalf("Write allocates %.1f times per batch of 64, want 0", allocs)
	}
}
