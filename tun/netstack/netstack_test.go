package netstack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/gozone/gozone/tun"
	"github.com/gozone/gozone/tun/tuntest"
)

var (
	local4  = netip.MustParseAddr("100.64.0.1")
	remote4 = netip.MustParseAddr("10.0.0.1")
	local6  = netip.MustParseAddr("fd00::1")
	remote6 = netip.MustParseAddr("fd00:1::1")
)

const listenPort = 5555

// harness puts a fresh stack under the contract suite. The far side is the
// stack's own sockets: Inject sends UDP from sockets bound to the packet's
// source, Collect reads UDP on Local:listenPort.
func harness(t *testing.T) *tuntest.Harness {
	d, err := New(Config{Addrs: []netip.Addr{local4, local6}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	collected := make(chan []byte, 4096)
	for _, a := range []netip.Addr{local4, local6} {
		to := netip.AddrPortFrom(a, listenPort)
		pc, err := d.ListenUDP(to)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 65536)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				src := from.(*net.UDPAddr).AddrPort()
				src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
				collected <- tuntest.UDP(src, to, buf[:n])
			}
		}()
	}

	var mu sync.Mutex
	socks := map[netip.AddrPort]net.PacketConn{}
	return &tuntest.Harness{
		Dev:        d,
		ErrClosed:  tun.ErrClosed,
		V4:         tuntest.Addrs{Local: local4, Remote: remote4},
		V6:         tuntest.Addrs{Local: local6, Remote: remote6},
		ListenPort: listenPort,
		Stack:      true,
		Inject: func(pkts [][]byte) error {
			mu.Lock()
			defer mu.Unlock()
			for _, pkt := range pkts {
				p, err := tuntest.Parse(pkt)
				if err != nil {
					return err
				}
				pc := socks[p.Src]
				if pc == nil {
					if pc, err = d.ListenUDP(p.Src); err != nil {
						return err
					}
					socks[p.Src] = pc
					t.Cleanup(func() { pc.Close() })
				}
				if _, err := pc.WriteTo(p.Payload, net.UDPAddrFromAddrPort(p.Dst)); err != nil {
					return err
				}
			}
			return nil
		},
		Collect: func(ctx context.Context) ([]byte, error) {
			select {
			case pkt := <-collected:
				return pkt, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	}
}

func TestContract(t *testing.T) {
	tuntest.Run(t, harness)
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrNoAddrs) {
		t.Errorf("New without addresses: %v", err)
	}
	d, err := New(Config{Addrs: []netip.Addr{local4}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.DialContext(context.Background(), "udp6", "[fd00::9]:1"); !errors.Is(err, ErrNoFamily) {
		t.Errorf("dial IPv6 on an IPv4-only stack: %v", err)
	}
	if _, err := d.DialContext(context.Background(), "sctp", "10.0.0.1:1"); !errors.Is(err, ErrBadNetwork) {
		t.Errorf("dial sctp: %v", err)
	}
	if _, err := d.LookupHost(context.Background(), "example.test"); !errors.Is(err, ErrNoDNS) {
		t.Errorf("LookupHost without DNS: %v", err)
	}
	bad := [][]byte{{}, {0x45}, {0x10, 1, 2}, make([]byte, 1281)}
	bad[3][0] = 0x45
	if n, err := d.Send(bad, 0); n != 0 || err != nil {
		t.Errorf("Send of garbage = %d, %v", n, err)
	}
	if st := d.Stats(); st.DroppedMalformed != 3 || st.DroppedOversize != 1 {
		t.Errorf("stats: %+v", st)
	}
}

// pair wires two stacks back to back: what one emits, the other receives.
func pair(t testing.TB, cfgA, cfgB Config) (a, b *Device) {
	t.Helper()
	var err error
	if a, err = New(cfgA); err != nil {
		t.Fatal(err)
	}
	if b, err = New(cfgB); err != nil {
		a.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	pump := func(from, to *Device) {
		defer wg.Done()
		bufs, sizes := make([][]byte, from.BatchSize()), make([]int, from.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, from.MTU())
		}
		for {
			n, err := from.PollRecvMany(context.Background(), bufs, sizes, 0)
			if err != nil {
				return
			}
			for i := range n {
				bufs[i] = bufs[i][:sizes[i]]
			}
			to.Send(bufs[:n], 0) // drops after Close are fine
			for i := range n {
				bufs[i] = bufs[i][:cap(bufs[i])]
			}
		}
	}
	wg.Add(2)
	go pump(a, b)
	go pump(b, a)
	t.Cleanup(func() {
		a.Close()
		b.Close()
		wg.Wait()
	})
	return a, b
}

var (
	addrA4 = netip.MustParseAddr("10.10.0.1")
	addrB4 = netip.MustParseAddr("10.10.0.2")
	addrA6 = netip.MustParseAddr("fd10::1")
	addrB6 = netip.MustParseAddr("fd10::2")
)

// TestDialThroughPair dials TCP and UDP, IPv4 and IPv6, from one stack to
// a listener on the other, and checks data both ways.
func TestDialThroughPair(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := pair(t, Config{Addrs: []netip.Addr{addrA4, addrA6}, Name: "a"}, Config{Addrs: []netip.Addr{addrB4, addrB6}, Name: "b"})

	ln, err := b.ListenTCP(netip.AddrPortFrom(netip.Addr{}, 8080))
	if err != nil {
		t.Fatal(err)
	}
	ln6, err := b.ListenTCP(netip.AddrPortFrom(addrB6, 8080))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []net.Listener{ln, ln6} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					io.Copy(c, c) // echo
				}()
			}
		}()
	}
	uc, err := b.ListenUDP(netip.AddrPortFrom(netip.Addr{}, 5353))
	if err != nil {
		t.Fatal(err)
	}
	uc6, err := b.ListenUDP(netip.AddrPortFrom(addrB6, 5353))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []net.PacketConn{uc, uc6} {
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := u.ReadFrom(buf)
				if err != nil {
					return
				}
				u.WriteTo(buf[:n], from)
			}
		}()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, target := range []string{"10.10.0.2", "[fd10::2]"} {
		t.Run("tcp "+target, func(t *testing.T) {
			c, err := a.DialContext(ctx, "tcp", target+":8080")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			data := make([]byte, 1<<20)
			for i := range data {
				data[i] = byte(i * 31)
			}
			go c.Write(data)
			got := make([]byte, len(data))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read echo: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("TCP echo differs")
			}
		})
		t.Run("udp "+target, func(t *testing.T) {
			c, err := a.DialContext(ctx, "udp", target+":5353")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			msg := []byte("datagram through two stacks")
			buf := make([]byte, 2048)
			// UDP may be lost in principle; retry a bounded number of times.
			for try := 0; ; try++ {
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, err := c.Read(buf)
				if err == nil {
					if !bytes.Equal(buf[:n], msg) {
						t.Fatalf("UDP echo %q", buf[:n])
					}
					break
				}
				if try == 10 {
					t.Fatalf("no UDP echo: %v", err)
				}
			}
		})
	}
	ln.Close()
	ln6.Close()
	uc.Close()
	uc6.Close()
	a.Close()
	b.Close()
}

// TestLookupAndDialByName resolves a name with a DNS server running in the
// other stack and dials it.
func TestLookupAndDialByName(t *testing.T) {
	a, b := pair(t,
		Config{Addrs: []netip.Addr{addrA4}, DNS: []netip.Addr{addrB4}},
		Config{Addrs: []netip.Addr{addrB4}})
	pc, err := b.ListenUDP(netip.AddrPortFrom(addrB4, 53))
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Qtype == dns.TypeA && r.Question[0].Name == "svc.gozone.test." {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   addrB4.AsSlice(),
			})
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	defer srv.Shutdown()

	ln, err := b.ListenTCP(netip.AddrPortFrom(addrB4, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello by name"))
			c.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addrs, err := a.LookupHost(ctx, "svc.gozone.test.")
	if err != nil || len(addrs) != 1 || addrs[0] != addrB4 {
		t.Fatalf("LookupHost = %v, %v; want [%v]", addrs, err, addrB4)
	}
	c, err := a.DialContext(ctx, "tcp4", "svc.gozone.test.:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello by name" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// TestCloseUnblocksSockets checks that closing the device ends blocked
// socket calls in the stack.
func TestCloseUnblocksSockets(t *testing.T) {
	d, err := New(Config{Addrs: []netip.Addr{local4}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := d.ListenTCP(netip.AddrPortFrom(local4, 80))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	d.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Accept returned a connection after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept not unblocked by Close")
	}
	if _, err := d.DialContext(context.Background(), "tcp", "10.0.0.1:1"); !errors.Is(err, tun.ErrClosed) {
		t.Errorf("DialContext after Close: %v", err)
	}
}

// FuzzSend feeds arbitrary bytes to the stack: garbage is dropped (by us or
// by gVisor), never a panic, and the device keeps working.
func FuzzSend(f *testing.F) {
	f.Add(tuntest.UDP(netip.AddrPortFrom(remote4, 1), netip.AddrPortFrom(local4, 2), []byte("x")))
	f.Add(tuntest.TCP(netip.AddrPortFrom(remote6, 1), netip.AddrPortFrom(local6, 80), 1, 0, tuntest.TCPSyn, nil))
	f.Add(tuntest.ICMPEcho(remote4, local4, false, 1, 1, []byte("ping")))
	f.Add([]byte{0x45})
	d, err := New(Config{Addrs: []netip.Addr{local4, local6}})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	fuzzSend(f, d)
}

// fuzzSend feeds every fuzz input to d as one packet (Send must accept
// it: garbage is dropped and counted, not an error) while a goroutine
// drains what the stack answers so its queue never fills.
func fuzzSend(f *testing.F, d *Device) {
	go func() {
		bufs, sizes := [][]byte{make([]byte, 1280)}, []int{0}
		for {
			if _, err := d.PollRecvMany(context.Background(), bufs, sizes, 0); err != nil {
				return
			}
		}
	}()
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if _, err := d.Send([][]byte{pkt}, 0); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkTCPThroughPair measures one TCP stream from one stack to another
// wired back to back through PollRecvMany/Send.
func BenchmarkTCPThroughPair(b *testing.B) {
	a, z := pair(b, Config{Addrs: []netip.Addr{addrA4}}, Config{Addrs: []netip.Addr{addrB4}})
	ln, err := z.ListenTCP(netip.AddrPortFrom(addrB4, 9000))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}()
	c, err := a.DialContext(context.Background(), "tcp", "10.10.0.2:9000")
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	n := <-done
	b.StopTimer()
	if n != int64(b.N*len(chunk)) {
		b.Fatalf("received %d of %d bytes", n, b.N*len(chunk))
	}
	b.ReportMetric(float64(n)*8/b.Elapsed().Seconds()/1e9, "Gbit/s")
}
