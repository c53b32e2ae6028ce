package tuntest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// maxBatch mirrors connlib.MaxBatch.
const maxBatch = 128

func (s *suite) testBasics(t *testing.T) {
	h, _ := s.harness(t)
	if bs := h.Dev.BatchSize(); bs < 1 || bs > maxBatch {
		t.Errorf("BatchSize() = %d, want 1..%d", bs, maxBatch)
	}
	if bs1, bs2 := h.Dev.BatchSize(), h.Dev.BatchSize(); bs1 != bs2 {
		t.Errorf("BatchSize changed between calls: %d, %d", bs1, bs2)
	}
	minMTU := 576
	if h.V6.Local.IsValid() {
		minMTU = 1280
	}
	if mtu := h.Dev.MTU(); mtu < minMTU || mtu > 65535 {
		t.Errorf("MTU() = %d, want %d..65535", mtu, minMTU)
	}
	if h.Dev.Name() == "" {
		t.Error("Name() is empty")
	}
}

// testSinglePacket sends one packet of every kind and family each way.
func (s *suite) testSinglePacket(t *testing.T) {
	h, b := s.harness(t)
	for _, f := range h.families() {
		for i, k := range b.kinds() {
			t.Run(f.name+"/"+k.String(), func(t *testing.T) {
				flow := uint32(i)
				out := b.out(f, k, flow, 0, b.sizeFor(3, f, k))
				e := b.expect()
				e.add(out)
				inject(t, h, [][]byte{out})
				bufs, _ := makeBufs(1, 16, b.mtu)
				readOut(t, h, e, bufs, 16)

				in := b.in(f, k, flow, 0, b.sizeFor(4, f, k))
				e = b.expect()
				e.add(in)
				sendIn(t, h, [][]byte{in}, 16)
				collectIn(t, h, e)
			})
		}
	}
}

// batch builds n packets over 4 flows with varied sizes.
func (b *builder) batch(f family, out bool, n int, seq0 uint32) [][]byte {
	pkts := make([][]byte, n)
	for i := range pkts {
		flow := uint32(i % 4)
		k := b.kindOf(flow)
		seq := seq0 + uint32(i/4)
		if out {
			pkts[i] = b.out(f, k, flow, seq, b.sizeFor(i, f, k))
		} else {
			pkts[i] = b.in(f, k, flow, seq, b.sizeFor(i, f, k))
		}
	}
	return pkts
}

// testBatch moves full batches of mixed sizes (up to MTU) each way at every
// offset, reading into buffers of exactly offset+MTU bytes.
func (s *suite) testBatch(t *testing.T) {
	h, b := s.harness(t)
	bs := h.Dev.BatchSize()
	var seq uint32
	for _, f := range h.families() {
		for _, off := range offsets {
			t.Run(fmt.Sprintf("%s/offset%d", f.name, off), func(t *testing.T) {
				pkts := b.batch(f, true, bs, seq)
				e := b.expect()
				e.add(pkts...)
				inject(t, h, pkts)
				bufs, _ := makeBufs(bs, off, b.mtu)
				readOut(t, h, e, bufs, off)

				pkts = b.batch(f, false, bs, seq)
				e = b.expect()
				e.add(pkts...)
				sendIn(t, h, pkts, off)
				collectIn(t, h, e)
				seq += uint32(bs)
			})
		}
	}
}

// testPartialReads reads with fewer bufs than packets waiting, and with
// len(sizes) > len(bufs).
func (s *suite) testPartialReads(t *testing.T) {
	h, b := s.harness(t)
	f := h.families()[0]
	n := min(10, h.Dev.BatchSize())
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = b.out(f, kindUDP, 0, uint32(i), b.sizeFor(i, f, kindUDP))
	}
	e := b.expect()
	e.add(pkts...)
	inject(t, h, pkts)
	bufs, _ := makeBufs(3, 16, b.mtu)
	sizes := make([]int, 8)
	ctx, cancel := context.WithTimeout(context.Background(), dataTimeout)
	defer cancel()
	for !e.done() {
		got, err := h.Dev.PollRecvMany(ctx, bufs, sizes, 16)
		if err != nil {
			t.Fatalf("PollRecvMany: %v (missing %s)", err, e.missing())
		}
		if got < 1 || got > len(bufs) {
			t.Fatalf("PollRecvMany returned %d packets for %d bufs", got, len(bufs))
		}
		for i := range got {
			if err := e.offer(bufs[i][16 : 16+sizes[i]]); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// testOrder moves many batches of 4 interleaved flows each way and checks
// that every flow arrives complete and in order.
func (s *suite) testOrder(t *testing.T) {
	h, b := s.harness(t)
	bs := h.Dev.BatchSize()
	const rounds = 16
	for _, f := range h.families() {
		t.Run(f.name, func(t *testing.T) {
			// More bufs than BatchSize: the device must still return at
			// most BatchSize packets per call (checked by readOut).
			bufs, _ := makeBufs(bs+3, 16, b.mtu)
			e := b.expect()
			for r := range rounds {
				pkts := b.batch(f, true, bs, uint32(r*bs))
				e.add(pkts...)
				inject(t, h, pkts)
				readOut(t, h, e, bufs, 16)
			}
			e = b.expect()
			for r := range rounds {
				pkts := b.batch(f, false, bs, uint32(r*bs))
				e.add(pkts...)
				sendIn(t, h, pkts, 16)
				collectIn(t, h, e)
			}
		})
	}
}

// testBufferTooSmall checks that a packet which does not fit the caller's
// buffer is dropped, never truncated, and that later packets still arrive.
func (s *suite) testBufferTooSmall(t *testing.T) {
	h, b := s.harness(t)
	f := h.families()[0]
	const room = 200
	// Flow 1 carries MTU-sized packets that cannot fit; they must not show
	// up at all (the expect tracker rejects any flow-1 packet, and a
	// truncated one fails to parse while carrying the marker).
	var pkts [][]byte
	e := b.expect()
	for i := range 3 {
		big := b.out(f, kindUDP, 1, uint32(i), b.mtu)
		small := b.out(f, kindUDP, 0, uint32(i), 100)
		e.add(small)
		pkts = append(pkts, big, small)
	}
	inject(t, h, pkts)
	bufs, _ := makeBufs(2, 16, room)
	readOut(t, h, e, bufs, 16)
}

// testBlocksUntilData checks that PollRecvMany waits while there is nothing
// to read and returns once a packet arrives.
func (s *suite) testBlocksUntilData(t *testing.T) {
	h, b := s.harness(t)
	f := h.families()[0]
	pkt := b.out(f, kindUDP, 0, 0, 200)
	e := b.expect()
	e.add(pkt)
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		bufs, _ := makeBufs(h.Dev.BatchSize(), 16, b.mtu)
		close(started)
		done <- readOutErr(h, e, bufs, 16, dataTimeout)
	}()
	<-started
	select {
	case err := <-done:
		t.Fatalf("PollRecvMany returned before any packet was injected: %v", err)
	case <-time.After(quietPeriod):
	}
	inject(t, h, [][]byte{pkt})
	if err := await(t, done, dataTimeout+promptTimeout, "PollRecvMany"); err != nil {
		t.Fatal(err)
	}
}

// testContextCancel checks ctx handling of PollRecvMany and SendReady, and
// that a cancelled read loses no packet.
func (s *suite) testContextCancel(t *testing.T) {
	h, b := s.harness(t)
	f := h.families()[0]

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pollUntilErr(ctx, h.Dev); !errors.Is(err, context.Canceled) {
		t.Errorf("PollRecvMany with cancelled ctx: %v, want context.Canceled", err)
	}
	if err := h.Dev.SendReady(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("SendReady with cancelled ctx: %v, want nil or context.Canceled", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	if err := pollUntilErr(ctx, h.Dev); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PollRecvMany with expiring ctx: %v, want context.DeadlineExceeded", err)
	}
	cancel()

	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pollUntilErr(ctx, h.Dev) }()
	time.Sleep(quietPeriod)
	cancel()
	if err := await(t, done, promptTimeout, "PollRecvMany after cancel"); !errors.Is(err, context.Canceled) {
		t.Errorf("blocked PollRecvMany after cancel: %v, want context.Canceled", err)
	}

	// The device still works and the cancelled reads lost nothing.
	pkts := [][]byte{b.out(f, kindUDP, 0, 0, 100), b.out(f, kindUDP, 0, 1, 100)}
	e := b.expect()
	e.add(pkts...)
	inject(t, h, pkts)
	bufs, _ := makeBufs(4, 16, b.mtu)
	readOut(t, h, e, bufs, 16)
}

// testConcurrentSend sends from several goroutines at once (run it with
// -race) while Collect drains, and checks every flow arrives complete and
// in order.
func (s *suite) testConcurrentSend(t *testing.T) {
	h, b := s.harness(t)
	f := h.families()[0]
	const senders, rounds = 4, 8
	per := max(1, h.Dev.BatchSize()/senders)
	e := b.expect()
	batches := make([][][]byte, senders)
	for g := range senders {
		flow := uint32(g)
		k := b.kindOf(flow)
		for i := range rounds * per {
			pkt := b.in(f, k, flow, uint32(i), 200)
			e.add(pkt)
			batches[g] = append(batches[g], pkt)
		}
	}
	collected := make(chan error, 1)
	go func() { collected <- collectInErr(h, e) }()

	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkts := batches[g]
			for len(pkts) > 0 {
				n := min(per, len(pkts))
				// At most BatchSize packets are in flight between one
				// SendReady and the matching Send across all senders,
				// so nothing is dropped for lack of room.
				if err := sendInErr(h, pkts[:n], 16); err != nil {
					errs <- fmt.Errorf("sender %d: %w", g, err)
					return
				}
				pkts = pkts[n:]
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := await(t, collected, dataTimeout+promptTimeout, "Collect"); err != nil {
		t.Fatal(err)
	}
}

// testConcurrentRecv reads with two goroutines at once: together they must
// get every packet exactly once.
func (s *suite) testConcurrentRecv(t *testing.T) {
	h, b := s.harness(t)
	f := h.families()[0]
	bs := h.Dev.BatchSize()
	e := b.expect()
	e.ordered = false
	var pkts [][]byte
	for i := range 4 * bs {
		pkts = append(pkts, b.out(f, kindUDP, uint32(i%4), uint32(i/4), 200))
	}
	e.add(pkts...)
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs, sizes := makeBufs(bs, 16, b.mtu)
			for {
				n, err := h.Dev.PollRecvMany(ctx, bufs, sizes, 16)
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						errs <- err
					}
					return
				}
				mu.Lock()
				for i := range n {
					if err := e.offer(bufs[i][16 : 16+sizes[i]]); err != nil {
						errs <- err
						cancel()
					}
				}
				if e.done() {
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < len(pkts); i += bs {
		inject(t, h, pkts[i:min(i+bs, len(pkts))])
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(dataTimeout):
		cancel()
		<-finished
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !e.done() {
		t.Errorf("concurrent readers missed: %s", e.missing())
	}
}

// testStack checks, for harnesses with a real IP stack behind the device,
// that an echo request and a TCP SYN to a closed port are answered.
func (s *suite) testStack(t *testing.T) {
	h, b := s.harness(t)
	if !h.Stack {
		t.Log("harness has no IP stack on the far side; nothing to answer echo requests")
		return
	}
	for _, f := range h.families() {
		t.Run(f.name+"/echo", func(t *testing.T) {
			payload := b.payload(f, kindICMP, 7, 1, 100)
			req := ICMPEcho(f.Remote, f.Local, false, 0x4242, 1, payload)
			waitFor(t, h, req, func(p *Packet) bool {
				return p.IsEchoReply() && p.Src.Addr() == f.Local && p.Dst.Addr() == f.Remote &&
					p.ICMPID == 0x4242 && p.ICMPSeq == 1 && string(p.Payload) == string(payload)
			}, "echo reply")
		})
		t.Run(f.name+"/tcp-rst", func(t *testing.T) {
			src := netip.AddrPortFrom(f.Remote, 50999)
			dst := netip.AddrPortFrom(f.Local, 7) // nothing listens on echo
			syn := TCP(src, dst, 1000, 0, TCPSyn, nil)
			waitFor(t, h, syn, func(p *Packet) bool {
				return p.Proto == ProtoTCP && p.Src == dst && p.Dst == src &&
					p.TCPFlags&TCPRst != 0 && p.TCPAck == 1001
			}, "TCP RST")
		})
	}
}

// waitFor sends req through Dev.Send and reads PollRecvMany until a packet
// matches, resending req every 2 s as ping does: a real stack may drop a
// request or its answer (ICMP rate limits, an address still settling).
func waitFor(t *testing.T, h *Harness, req []byte, match func(*Packet) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(dataTimeout)
	bufs, sizes := makeBufs(h.Dev.BatchSize(), 16, h.Dev.MTU())
	for attempt := 1; time.Now().Before(deadline); attempt++ {
		sendIn(t, h, [][]byte{req}, 16)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		for {
			n, err := h.Dev.PollRecvMany(ctx, bufs, sizes, 16)
			if errors.Is(err, context.DeadlineExceeded) {
				break
			}
			if err != nil {
				cancel()
				t.Fatalf("waiting for %s: PollRecvMany: %v", what, err)
			}
			for i := range n {
				p, err := Parse(bufs[i][16 : 16+sizes[i]])
				if err == nil && match(&p) {
					cancel()
					if attempt > 1 {
						t.Logf("%s arrived after %d requests", what, attempt)
					}
					return
				}
			}
		}
		cancel()
	}
	t.Fatalf("no %s within %v", what, dataTimeout)
}
