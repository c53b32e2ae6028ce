package snownet

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// newTestProxy runs a turnProxy on a loopback socket standing in for the
// Bind: datagrams from the relay are counted (as the Bind's receive path
// does) and STUN answers go to the allocation.
func newTestProxy(t *testing.T, relay Relay, watch turnWatchConfig) *turnProxy {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := newTURNProxy(relay, func(b []byte, to netip.AddrPort) error {
		_, err := pc.WriteToUDPAddrPort(b, to)
		return err
	}, testLogger(t))
	p.alloc.cfg.rto = 100 * time.Millisecond
	p.watch = watch
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p.rx.Add(1)
			if Classify(buf[:n]) == KindSTUN {
				p.handleSTUN(buf[:n])
			}
		}
	}()
	t.Cleanup(func() {
		p.close()
		_ = pc.Close()
		<-done
	})
	return p
}

// The watchdog re-creates an allocation the relay lost (restart) when we
// keep sending through the relay and hear nothing back, well before the
// allocation's own 25 s keepalive check, and without any agent asking.
func TestTURNWatchdogReallocatesAfterRelayRestart(t *testing.T) {
	srv, stop := startTURNOn(t, "127.0.0.1:0")
	p := newTestProxy(t, testRelay(srv), turnWatchConfig{tick: 100 * time.Millisecond, silentAfter: 500 * time.Millisecond})
	if err := p.ensureAllocated(); err != nil {
		t.Fatal(err)
	}
	old := p.alloc.relayedAddr()
	stop()
	startTURNOn(t, srv.String())
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		p.tx.Add(1) // data sent through the relay, nothing comes back
		if ra := p.alloc.relayedAddr(); ra.IsValid() && ra != old {
			// The new allocation is real: the relay answers a refresh.
			if err := p.alloc.refresh(ctxT(t, 10*time.Second), p.alloc.allocationLifetime()); err != nil {
				t.Fatalf("refresh of the new allocation: %v", err)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("allocation not re-created within 15 s of the relay restart (relayed %v, was %v)", p.alloc.relayedAddr(), old)
}

// A relay that answers is not bothered: while data flows both ways the
// watchdog sends nothing, and silence from a live relay costs one refresh
// per backoff, not one per tick.
func TestTURNWatchdogLeavesLiveRelayAlone(t *testing.T) {
	srv := startTURN(t)
	p := newTestProxy(t, testRelay(srv), turnWatchConfig{tick: 50 * time.Millisecond, silentAfter: 200 * time.Millisecond, backoff: time.Hour})
	if err := p.ensureAllocated(); err != nil {
		t.Fatal(err)
	}
	old := p.alloc.relayedAddr()
	ok0 := p.alloc.lastSuccess()
	for i := 0; i < 20; i++ { // 1 s of traffic both ways
		p.tx.Add(1)
		p.rx.Add(1)
		time.Sleep(50 * time.Millisecond)
	}
	if got := p.alloc.lastSuccess(); !got.Equal(ok0) {
		t.Fatal("the watchdog checked a relay that was answering")
	}
	// Now silence from the (live) relay while we send: one check, which
	// finds the allocation alive and keeps it.
	for i := 0; i < 40; i++ {
		p.tx.Add(1)
		time.Sleep(50 * time.Millisecond)
	}
	ok1 := p.alloc.lastSuccess()
	if !ok1.After(ok0) {
		t.Fatal("no check after the relay went silent")
	}
	for i := 0; i < 20; i++ { // still silent: the backoff holds
		p.tx.Add(1)
		time.Sleep(50 * time.Millisecond)
	}
	if got := p.alloc.lastSuccess(); !got.Equal(ok1) {
		t.Fatal("checked again within the backoff")
	}
	if ra := p.alloc.relayedAddr(); ra != old {
		t.Fatalf("a live allocation was replaced: %v -> %v", old, ra)
	}
}
