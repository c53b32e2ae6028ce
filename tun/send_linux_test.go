//go:build linux

package tun

import (
	"errors"
	"net/netip"
	"os"
	"sync"
	"testing"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/gozone/gozone/tun/tuntest"
)

// gsoRefusingDev is a wireguard-go Device whose kernel refuses every write
// of a batch with more than one packet (as a kernel that rejects GSO writes
// does for coalesced batches) and accepts single packets.
type gsoRefusingDev struct {
	mu     sync.Mutex
	writes [][]int // batch sizes seen
}

func (d *gsoRefusingDev) Write(bufs [][]byte, offset int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writes = append(d.writes, []int{len(bufs)})
	if len(bufs) > 1 {
		return 0, errors.Join(&os.PathError{Op: "write", Path: "/dev/net/tun", Err: unix.EINVAL})
	}
	return len(bufs[0]) - offset, nil
}

func (d *gsoRefusingDev) File() *os.File                         { return nil }
func (d *gsoRefusingDev) Read([][]byte, []int, int) (int, error) { return 0, os.ErrClosed }
func (d *gsoRefusingDev) MTU() (int, error)                      { return 1280, nil }
func (d *gsoRefusingDev) Name() (string, error)                  { return "fake", nil }
func (d *gsoRefusingDev) Events() <-chan wgtun.Event             { return nil }
func (d *gsoRefusingDev) Close() error                           { return nil }
func (d *gsoRefusingDev) BatchSize() int                         { return 128 }

// TestLinuxSendDisablesCoalescingOnEINVAL: the first batch the kernel
// refuses is lost and counted; every later batch is written one packet at
// a time and accepted. Runs without root on a fake queue.
func TestLinuxSendDisablesCoalescingOnEINVAL(t *testing.T) {
	fake := &gsoRefusingDev{}
	dev := &LinuxTun{
		name: "fake", mtu: 1280, offloads: true, log: zap.NewNop(),
		closed: make(chan struct{}), scratch: make(chan *sendScratch, 1),
	}
	dev.queues = []*linuxQueue{{t: dev, dev: fake, work: make(chan writeJob)}}
	var pkts [][]byte
	for i := range 3 {
		pkts = append(pkts, tuntest.TCP(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), uint32(1+i*10), 1, tuntest.TCPAck, make([]byte, 10)))
	}
	if n, err := dev.Send(withRoom(pkts), hdrRoom); n != 0 || err != nil {
		t.Fatalf("refused batch: Send = %d, %v; want 0, nil", n, err)
	}
	if st := dev.Stats(); st.TxDropped != 3 || !dev.noCoalesce.Load() {
		t.Fatalf("after refusal: stats %+v, noCoalesce %v", st, dev.noCoalesce.Load())
	}
	if n, err := dev.Send(withRoom(pkts), hdrRoom); n != 3 || err != nil {
		t.Fatalf("after fallback: Send = %d, %v; want 3, nil", n, err)
	}
	if st := dev.Stats(); st.TxPackets != 3 || st.TxDropped != 3 {
		t.Fatalf("stats %+v", st)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.writes) != 4 { // one refused batch, then three single writes
		t.Fatalf("writes %v", fake.writes)
	}
}
