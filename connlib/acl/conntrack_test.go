package acl

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib/ippacket"
)

func TestTrackerReplies(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	r4, r6 := ap("10.0.0.5"), ap("2001:db8::5")
	cases := []struct {
		name     string
		out, rep ippacket.Packet
	}{
		{"tcp", pkt(t, "tcp", aV4, r4, 40000, 443), pkt(t, "tcp", r4, aV4, 443, 40000)},
		{"udp6", pkt(t, "udp", aV6, r6, 5353, 53), pkt(t, "udp", r6, aV6, 53, 5353)},
		{"icmp echo", pkt(t, "icmp", aV4, r4, 0, 77), pkt(t, "icmpreply", r4, aV4, 0, 77)},
		{"icmp6 echo", pkt(t, "icmp", aV6, r6, 0, 78), pkt(t, "icmpreply", r6, aV6, 0, 78)},
		{"gre", pkt(t, "gre", aV4, r4, 0, 0), pkt(t, "gre", r4, aV4, 0, 0)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if tr.AllowReply(c.rep, t0) {
				t.Fatal("reply passed before the flow was tracked")
			}
			tr.Track(c.out, t0)
			if !tr.AllowReply(c.rep, t0.Add(time.Second)) {
				t.Fatal("reply of tracked flow refused")
			}
			// The outbound packet itself is not a "reply".
			if tr.AllowReply(c.out, t0) {
				t.Fatal("same-direction packet passed as reply")
			}
		})
	}
	// Wrong port / wrong echo id / wrong client do not pass.
	for name, p := range map[string]ippacket.Packet{
		"other port":       pkt(t, "tcp", r4, aV4, 443, 40001),
		"other echo id":    pkt(t, "icmpreply", r4, aV4, 0, 79),
		"other client":     pkt(t, "tcp", r4, bV4, 443, 40000),
		"other resource":   pkt(t, "tcp", ap("10.0.0.6"), aV4, 443, 40000),
		"tcp for udp flow": pkt(t, "tcp", r6, aV6, 53, 5353),
	} {
		if tr.AllowReply(p, t0) {
			t.Errorf("%s: passed", name)
		}
	}
	// ICMP errors always pass (reference: "ICMP errors always pass inbound").
	if !tr.AllowReply(pkt(t, "icmperr", r4, bV4, 0, 0), t0) {
		t.Error("ICMP error refused")
	}
}

func TestTrackerTimeouts(t *testing.T) {
	tr := NewTracker(TrackerConfig{UDPTimeout: 30 * time.Second, UnconfirmedTimeout: 5 * time.Second})
	r := ap("10.0.0.5")
	out := pkt(t, "udp", aV4, r, 1000, 53)
	rep := pkt(t, "udp", r, aV4, 53, 1000)

	tr.Track(out, t0)
	if tr.AllowReply(rep, t0.Add(5*time.Second)) {
		t.Fatal("unconfirmed flow outlived UnconfirmedTimeout")
	}
	tr.Track(out, t0.Add(10*time.Second)) // re-opened after expiry
	if !tr.AllowReply(rep, t0.Add(14*time.Second)) {
		t.Fatal("reply within unconfirmed timeout refused")
	}
	// Confirmed now: UDPTimeout from the last packet.
	if !tr.AllowReply(rep, t0.Add(14*time.Second+29*time.Second)) {
		t.Fatal("confirmed flow expired early")
	}
	if tr.AllowReply(rep, t0.Add(43*time.Second+30*time.Second)) {
		t.Fatal("confirmed flow outlived UDPTimeout")
	}
}

func TestTrackerEviction(t *testing.T) {
	tr := NewTracker(TrackerConfig{Size: 64})
	if tr.Capacity() != 64 {
		t.Fatalf("capacity %d", tr.Capacity())
	}
	r := ap("10.0.0.5")
	// 10x capacity distinct flows: the table stays bounded, evicts, and the
	// most recent flows (latest expiry) survive.
	for i := 0; i < 640; i++ {
		tr.TrackTuple(ippacket.FiveTuple{Src: aV4, Dst: r, SrcPort: uint16(i), DstPort: 53, Proto: ippacket.ProtoUDP}, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if tr.Evictions() == 0 {
		t.Fatal("no evictions with 10x capacity")
	}
	now := t0.Add(640 * time.Millisecond)
	last := ippacket.FiveTuple{Src: r, Dst: aV4, SrcPort: 53, DstPort: 639, Proto: ippacket.ProtoUDP}
	if !tr.AllowReplyTuple(last, now) {
		t.Fatal("most recent flow was evicted")
	}
	live := 0
	for i := 0; i < 640; i++ {
		if tr.AllowReplyTuple(ippacket.FiveTuple{Src: r, Dst: aV4, SrcPort: 53, DstPort: uint16(i), Proto: ippacket.ProtoUDP}, now) {
			live++
		}
	}
	if live > 64 || live < 32 {
		t.Fatalf("%d live flows in a 64-slot tracker", live)
	}
	tr.ForgetAddr(aV4)
	if tr.AllowReplyTuple(last, now) {
		t.Fatal("ForgetAddr kept the flow")
	}
	tr.TrackTuple(last.Reverse(), now)
	tr.Forget(last.Reverse())
	if tr.AllowReplyTuple(last, now) {
		t.Fatal("Forget kept the flow")
	}
}

func TestTrackerAllocs(t *testing.T) {
	tr := NewTracker(TrackerConfig{Size: 1024})
	r := ap("10.0.0.5")
	outs := make([]ippacket.Packet, 2000) // more flows than slots: eviction path too
	reps := make([]ippacket.Packet, len(outs))
	for i := range outs {
		outs[i] = pkt(t, "tcp", aV4, r, uint16(i), 443)
		reps[i] = pkt(t, "tcp", r, aV4, 443, uint16(i))
	}
	i := 0
	n := testing.AllocsPerRun(5000, func() {
		tr.Track(outs[i%len(outs)], t0)
		tr.AllowReply(reps[i%len(outs)], t0)
		i++
	})
	if n != 0 {
		t.Fatalf("tracker allocates %v per packet", n)
	}
}

func BenchmarkTracker(b *testing.B) {
	tr := NewTracker(TrackerConfig{})
	r := ap("10.0.0.5")
	keys := make([]ippacket.FiveTuple, 4096)
	for i := range keys {
		keys[i] = ippacket.FiveTuple{Src: aV4, Dst: r, SrcPort: uint16(i), DstPort: 443, Proto: ippacket.ProtoTCP}
		tr.TrackTuple(keys[i], t0)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k := keys[i&4095]
			tr.TrackTuple(k, t0)
			tr.AllowReplyTuple(k.Reverse(), t0)
			i++
		}
	})
}

// TestTrackerConcurrent hammers one tracker from several goroutines (run
// with -race). Each goroutine owns its flows, the table is large enough
// that nothing is evicted, and a ForgetAddr of an unrelated address runs
// alongside: every goroutine must see its own replies pass.
func TestTrackerConcurrent(t *testing.T) {
	tr := NewTracker(TrackerConfig{Size: 1 << 16})
	r := ap("10.0.0.5")
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			src := netip.AddrFrom4([4]byte{100, 64, 9, byte(g)})
			for i := 0; i < 1000; i++ {
				k := ippacket.FiveTuple{Src: src, Dst: r, SrcPort: uint16(i), DstPort: 443, Proto: ippacket.ProtoTCP}
				tr.TrackTuple(k, t0)
				if !tr.AllowReplyTuple(k.Reverse(), t0) {
					errs <- "own flow refused"
					return
				}
			}
		}(g)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			tr.ForgetAddr(ap("100.64.99.99"))
		}
	}()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if tr.Evictions() != 0 {
		t.Errorf("%d evictions in an oversized table", tr.Evictions())
	}
}
