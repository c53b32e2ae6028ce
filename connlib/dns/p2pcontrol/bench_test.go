package p2pcontrol

import "testing"

func BenchmarkIsControlPacket(b *testing.B) {
	pkt := make([]byte, 1280)
	pkt[0] = 0x60
	pkt[6] = 6 // TCP: the common, non-control case is rejected early
	b.ReportAllocs()
	for b.Loop() {
		if IsControlPacket(pkt) {
			b.Fatal("control")
		}
	}
}

func BenchmarkAppendAssignedIPs(b *testing.B) {
	m := AssignedIPs{Resource: rid, Domain: "app.example.com", ProxyIPs: proxyIPs(8)}
	buf := make([]byte, 0, MaxPacketSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := AppendAssignedIPs(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}
