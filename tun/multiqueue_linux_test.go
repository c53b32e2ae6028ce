//go:build linux

package tun

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/tun/tuntest"
)

const (
	mqFlows   = 100
	mqPerFlow = 40
)

func seqPayload(flow, seq int) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b, uint32(flow))
	binary.BigEndian.PutUint32(b[4:], uint32(seq))
	return b
}

func parseSeq(p []byte) (flow, seq int, ok bool) {
	if len(p) != 64 {
		return 0, 0, false
	}
	return int(binary.BigEndian.Uint32(p)), int(binary.BigEndian.Uint32(p[4:])), true
}

// orderChecker asserts that every flow's sequence numbers arrive complete
// and strictly in order.
type orderChecker struct {
	mu   sync.Mutex
	next []int
	got  int
	err  error
}

func newOrderChecker() *orderChecker { return &orderChecker{next: make([]int, mqFlows)} }

func (c *orderChecker) add(flow, seq int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
	case flow < 0 || flow >= mqFlows:
		c.err = fmt.Errorf("bad flow %d", flow)
	case seq != c.next[flow]:
		c.err = fmt.Errorf("flow %d: got seq %d, want %d (reordered or lost)", flow, seq, c.next[flow])
	default:
		c.next[flow]++
		c.got++
	}
}

func (c *orderChecker) done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil || c.got == mqFlows*mqPerFlow
}

func (c *orderChecker) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		t.Fatal(c.err)
	}
	if c.got != mqFlows*mqPerFlow {
		t.Fatalf("received %d of %d packets", c.got, mqFlows*mqPerFlow)
	}
}

// TestLinuxMultiQueueOrder runs 100 concurrent UDP flows through devices
// with 2 and 4 queues, in both directions, and requires every packet of
// every flow to arrive, in order.
func TestLinuxMultiQueueOrder(t *testing.T) {
	for _, queues := range []int{2, 4} {
		t.Run(fmt.Sprintf("queues%d", queues), func(t *testing.T) {
			ns, dev := newTunNS(t, LinuxConfig{Queues: queues})
			if dev.Queues() != queues || !dev.Steering() {
				t.Fatalf("Queues() = %d, Steering() = %v", dev.Queues(), dev.Steering())
			}
			t.Run("send", func(t *testing.T) { testMQSend(t, ns, dev) })
			t.Run("recv", func(t *testing.T) { testMQRecv(t, ns, dev, false) })
			// Echo: every packet read is answered with Send while the flows
			// run. Without the steering program the kernel's automq would
			// move each flow to the queue of our first reply and reorder it
			// (this subtest failed in most runs before steering existed).
			t.Run("echo", func(t *testing.T) { testMQRecv(t, ns, dev, true) })
		})
	}
}

// testMQSend: Send -> kernel -> one socket. Each Send batch interleaves
// all flows, so it is split over every queue and written in parallel.
func testMQSend(t *testing.T, ns *netns.NS, dev *LinuxTun) {
	dst := netip.AddrPortFrom(tunLocal4, 7100)
	sock := udpIn(t, ns, dst)
	var pkts [][]byte
	used := map[int]bool{}
	// Runs of 4 consecutive packets per flow, flows interleaved: every
	// batch carries many flows, and each flow several times, so a device
	// that spread one flow over queues written in parallel would reorder.
	const run = 4
	for seq0 := 0; seq0 < mqPerFlow; seq0 += run {
		for f := range mqFlows {
			for seq := seq0; seq < seq0+run; seq++ {
				p := tuntest.UDP(netip.AddrPortFrom(tunRemote4, uint16(20000+f)), dst, seqPayload(f, seq))
				h, _ := FlowHash(p)
				used[queueFor(h, dev.Queues())] = true
				pkts = append(pkts, p)
			}
		}
	}
	if len(used) != dev.Queues() {
		t.Fatalf("test flows hash onto %d of %d queues", len(used), dev.Queues())
	}
	c := newOrderChecker()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for !c.done() {
			_ = sock.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, from, err := sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			f, s, ok := parseSeq(buf[:n])
			if !ok || int(from.Port())-20000 != f {
				c.add(-1, 0)
				return
			}
			c.add(f, s)
		}
	}()
	sendAllLinux(t, dev, withRoom(pkts))
	<-done
	c.check(t)
}

// testMQRecv: 100 sockets -> kernel -> queues -> PollRecvMany. The kernel
// spreads flows over the queues by hash; each queue's reader keeps its
// flows in order.
func testMQRecv(t *testing.T, ns *netns.NS, dev *LinuxTun, echo bool) {
	dst := netip.AddrPortFrom(tunRemote4, 9100)
	flowOf := map[uint16]int{}
	socks := make([]*net.UDPConn, mqFlows)
	for f := range socks {
		socks[f] = udpIn(t, ns, netip.AddrPortFrom(tunLocal4, 0))
		flowOf[socks[f].LocalAddr().(*net.UDPAddr).AddrPort().Port()] = f
	}
	before := dev.Stats().RxQueues
	c := newOrderChecker()
	errc := make(chan error, 1)
	go func() {
		for seq := range mqPerFlow {
			for f, s := range socks {
				if _, err := s.WriteToUDPAddrPort(seqPayload(f, seq), dst); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- nil
	}()
	echoC := newOrderChecker()
	var echoWG sync.WaitGroup
	if echo {
		for _, s := range socks {
			echoWG.Add(1)
			go func() {
				defer echoWG.Done()
				buf := make([]byte, 2048)
				for range mqPerFlow {
					_ = s.SetReadDeadline(time.Now().Add(30 * time.Second))
					n, _, err := s.ReadFromUDPAddrPort(buf)
					if err != nil {
						echoC.add(-1, 0)
						return
					}
					f, seq, _ := parseSeq(buf[:n])
					echoC.add(f, seq)
				}
			}()
		}
	}
	var replies [][]byte
	recvUntil(t, dev, func(pkt []byte) {
		p, err := tuntest.Parse(pkt)
		if err != nil || p.Dst != dst {
			return
		}
		f, s, ok := parseSeq(p.Payload)
		if !ok || flowOf[p.Src.Port()] != f {
			c.add(-1, 0)
			return
		}
		c.add(f, s)
		if echo {
			replies = append(replies, tuntest.UDP(p.Dst, p.Src, p.Payload))
			if len(replies) == dev.BatchSize() {
				sendAllLinux(t, dev, withRoom(replies))
				replies = replies[:0]
			}
		}
	}, c.done)
	c.check(t)
	if echo {
		sendAllLinux(t, dev, withRoom(replies))
		echoWG.Wait()
		echoC.check(t)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	c.check(t)
	after := dev.Stats().RxQueues
	active := 0
	for i := range after {
		if after[i] > before[i] {
			active++
		}
	}
	if active < 2 {
		t.Fatalf("packets came from %d queue(s) only (%v -> %v); multi-queue not exercised", active, before, after)
	}
}
