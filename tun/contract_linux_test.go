//go:build linux

package tun

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/gozone/gozone/tun/tuntest"
)

// linuxHarness puts a fresh device in a fresh namespace and reaches its far
// side, the kernel's IP stack, with UDP sockets (a socket harness: Raw
// false, Stack true).
func linuxHarness(cfg LinuxConfig) func(t *testing.T) *tuntest.Harness {
	return func(t *testing.T) *tuntest.Harness {
		ns, dev := newTunNS(t, cfg)
		const listenPort = 5555
		var (
			mu    sync.Mutex
			socks = map[netip.AddrPort]*net.UDPConn{}
		)
		collectors := map[bool]*net.UDPConn{
			true:  udpIn(t, ns, netip.AddrPortFrom(tunLocal4, listenPort)),
			false: udpIn(t, ns, netip.AddrPortFrom(tunLocal6, listenPort)),
		}
		// One reader goroutine per family socket feeds Collect.
		type dgram struct {
			from    netip.AddrPort
			to      netip.AddrPort
			payload []byte
		}
		ch := make(chan dgram, 4096)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for is4, c := range collectors {
			local := netip.AddrPortFrom(tunLocal4, listenPort)
			if !is4 {
				local = netip.AddrPortFrom(tunLocal6, listenPort)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 65536)
				for {
					n, from, err := c.ReadFromUDPAddrPort(buf)
					if err != nil {
						return // closed by cleanup
					}
					d := dgram{from: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), to: local, payload: append([]byte(nil), buf[:n]...)}
					select {
					case ch <- d:
					case <-stop:
						return
					}
				}
			}()
		}
		t.Cleanup(func() {
			close(stop)
			for _, c := range collectors {
				c.Close()
			}
			wg.Wait()
		})
		return &tuntest.Harness{
			Dev:        dev,
			ErrClosed:  ErrClosed,
			V4:         tuntest.Addrs{Local: tunLocal4, Remote: tunRemote4},
			V6:         tuntest.Addrs{Local: tunLocal6, Remote: tunRemote6},
			ListenPort: listenPort,
			Stack:      true,
			Inject: func(pkts [][]byte) error {
				for _, pkt := range pkts {
					p, err := tuntest.Parse(pkt)
					if err != nil {
						return err
					}
					mu.Lock()
					s := socks[p.Src]
					if s == nil {
						s = udpIn(t, ns, p.Src)
						socks[p.Src] = s
					}
					mu.Unlock()
					if _, err := s.WriteToUDPAddrPort(p.Payload, p.Dst); err != nil {
						return fmt.Errorf("inject via socket %v: %w", p.Src, err)
					}
				}
				return nil
			},
			Collect: func(ctx context.Context) ([]byte, error) {
				select {
				case d := <-ch:
					return tuntest.UDP(d.from, d.to, d.payload), nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			},
		}
	}
}

func TestLinuxContract(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  LinuxConfig
	}{
		{"offloads", LinuxConfig{}},
		{"nooffloads", LinuxConfig{DisableOffloads: true}},
		{"queues3", LinuxConfig{Queues: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tuntest.Run(t, linuxHarness(tc.cfg))
		})
	}
}
