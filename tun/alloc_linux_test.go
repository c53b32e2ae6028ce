//go:build linux

package tun

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/gozone/gozone/tun/tuntest"
)

// TestLinuxAllocs is the allocation budget of the packet path: a Send of a
// batch and a PollRecvMany of a packet allocate nothing in steady state
// (counted process-wide, so the queue reader goroutines are included).
func TestLinuxAllocs(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  LinuxConfig
	}{
		{"offloads", LinuxConfig{}},
		{"nooffloads", LinuxConfig{DisableOffloads: true}},
		{"queues4", LinuxConfig{Queues: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, dev := newTunNS(t, tc.cfg)
			dst := netip.AddrPortFrom(tunLocal4, 7300)
			udpIn(t, ns, dst) // absorbs what Send delivers (drops once full)
			var pkts [][]byte
			for f := range 64 {
				pkts = append(pkts, tuntest.UDP(netip.AddrPortFrom(tunRemote4, uint16(30000+f%16)), dst, make([]byte, 200)))
			}
			bufs := withRoom(pkts)
			send := func() {
				if n, err := dev.Send(bufs, hdrRoom); err != nil || n != len(bufs) {
					t.Fatalf("Send: %d, %v", n, err)
				}
			}
			send() // warm the scratch pool
			if a := testing.AllocsPerRun(50, send); a > 0 {
				t.Errorf("Send of %d packets: %v allocs, want 0", len(bufs), a)
			}

			sock := udpIn(t, ns, netip.AddrPortFrom(tunLocal4, 0))
			remote := netip.AddrPortFrom(tunRemote4, 9)
			payload := make([]byte, 100)
			rb, sizes := linuxBufs(dev.BatchSize(), dev.MTU())
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			recv := func() {
				if _, err := sock.WriteToUDPAddrPort(payload, remote); err != nil {
					t.Fatal(err)
				}
				if _, err := dev.PollRecvMany(ctx, rb, sizes, hdrRoom); err != nil {
					t.Fatal(err)
				}
			}
			recv()
			if a := testing.AllocsPerRun(50, recv); a > 0 {
				t.Errorf("socket write + PollRecvMany: %v allocs, want 0", a)
			}
		})
	}
}
