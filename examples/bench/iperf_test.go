package main

import "testing"

func TestParseIperf(t *testing.T) {
	tcp := `{"end":{"sum_sent":{"bytes":100,"bits_per_second":8e8,"retransmits":3},"sum_received":{"bytes":90,"bits_per_second":7.2e8}}}`
	r, err := parseIperf([]byte(tcp), false)
	if err != nil || r.Gbps != 0.72 || r.Bytes != 90 || r.Retransmits == nil || *r.Retransmits != 3 {
		t.Fatalf("tcp: %+v %v", r, err)
	}
	udp := `{"end":{"sum":{"bytes":1000,"bits_per_second":1e9,"lost_packets":25,"packets":100,"lost_percent":25}}}`
	r, err = parseIperf([]byte(udp), true)
	if err != nil || r.Gbps != 0.75 || r.LostPercent != 25 || r.Bytes != 750 {
		t.Fatalf("udp: %+v %v", r, err)
	}
	if _, err := parseIperf([]byte(`{"error":"unable to connect"}`), false); err == nil {
		t.Fatal("no error for an iperf3 error")
	}
	if _, err := parseIperf([]byte("garbage"), false); err == nil {
		t.Fatal("no error for garbage")
	}
}
