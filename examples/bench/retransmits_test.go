package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseIperfFixtures reads real iperf3 3.12 output (testdata, taken on
// loopback with some loss so that TCP retransmits): the retransmit count is
// end.sum_sent.retransmits, also with -R (the server's, passed back) and
// with -P 4 (summed over streams); UDP has none.
func TestParseIperfFixtures(t *testing.T) {
	for _, c := range []struct {
		file      string
		udp       bool
		retr      int64 // -1: none
		bytes     uint64
		gbpsAbove float64
	}{
		{"iperf3-tcp.json", false, 11, 2932080640, 20},
		{"iperf3-tcp-reverse.json", false, 7, 2752184055, 20},
		{"iperf3-tcp-4.json", false, 2, 2867855360, 20},
		{"iperf3-udp.json", true, -1, 12490800, 0.09},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			t.Fatal(err)
		}
		r, err := parseIperf(b, c.udp)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		switch {
		case c.retr < 0 && r.Retransmits != nil:
			t.Errorf("%s: retransmits %d, want none", c.file, *r.Retransmits)
		case c.retr >= 0 && (r.Retransmits == nil || *r.Retransmits != c.retr):
			t.Errorf("%s: retransmits %v, want %d", c.file, r.Retransmits, c.retr)
		}
		if r.Bytes != c.bytes || r.Gbps < c.gbpsAbove {
			t.Errorf("%s: %d bytes %.3f Gbit/s, want %d bytes > %.2f", c.file, r.Bytes, r.Gbps, c.bytes, c.gbpsAbove)
		}
	}
	// A TCP result without a retransmit field (a sender without tcp_info)
	// is unknown, not zero.
	r, err := parseIperf([]byte(`{"end":{"sum_sent":{"bytes":1},"sum_received":{"bytes":1,"bits_per_second":8}}}`), false)
	if err != nil || r.Retransmits != nil {
		t.Fatalf("no field: %+v %v", r, err)
	}
}

func i64(v int64) *int64 { return &v }

func tcpCell(path string, runs ...runRec) *cell {
	c := &cell{Test: "tcp", Path: path, Available: true, Runs: runs}
	summarize(c, nil, false)
	return c
}

func run1(round int, gbps float64, retr int64) runRec {
	return runRec{Round: round, iperfResult: iperfResult{Gbps: gbps, Bytes: uint64(gbps * 1e9 / 8 * 3), Retransmits: i64(retr)}}
}

func TestRetransmitsAndQueueCompare(t *testing.T) {
	p1, p2 := &benchPath{Name: pathQ1}, &benchPath{Name: pathQ2}
	q1 := tcpCell(pathQ1, run1(0, 1.0, 10), run1(1, 2.0, 20), runRec{Round: 2, Error: "boom", iperfResult: iperfResult{Retransmits: i64(1000)}})
	q2 := tcpCell(pathQ2, run1(0, 1.1, 40), run1(1, 1.8, 5), run1(2, 5, 0))
	summarizeRetransmits(q1, p1)
	summarizeRetransmits(q2, p2)
	if *q1.Retransmits != 30 || *q2.Retransmits != 45 {
		t.Fatalf("totals %d %d, want 30 (failed run left out) and 45", *q1.Retransmits, *q2.Retransmits)
	}
	if p1.TCPRetransmits["tcp"] != 30 || p2.TCPRetransmits["tcp"] != 45 {
		t.Errorf("per path: %v %v", p1.TCPRetransmits, p2.TCPRetransmits)
	}
	if got := retransmitCell(q1, 3); got != "10+20+- = 30" {
		t.Errorf("cell %q", got)
	}
	udp := &cell{Test: "udp", Path: pathQ1, Available: true, Runs: []runRec{{Round: 0}}}
	summarizeRetransmits(udp, nil)
	if udp.Retransmits != nil || retransmitCell(udp, 1) != "-" {
		t.Errorf("udp cell has retransmits")
	}

	rep := &report{Rounds: 3, Tests: tests("1M"), Results: []*cell{q1, q2, udp}}
	qs := compareQueues(rep)
	if len(qs) != 1 {
		t.Fatalf("%d comparisons, want 1 (tcp only): %+v", len(qs), qs)
	}
	q := qs[0]
	// Same-round ratios 1.1 and 0.9 (round 2 has no q1 figure): median 1.0.
	if q.Ratio == nil || *q.Ratio < 0.999 || *q.Ratio > 1.001 || q.Met {
		t.Errorf("ratio %v met %v, want 1.0 and missed (more retransmits)", q.Ratio, q.Met)
	}
	var out bytes.Buffer
	printQueueCompare(&out, qs)
	if !strings.Contains(out.String(), "missed: 15 more retransmits") {
		t.Errorf("table:\n%s", out.String())
	}

	// q2 faster with fewer retransmits: met.
	q2.Runs[0].Retransmits, q2.Runs[1].Gbps, q2.Runs[1].Retransmits = i64(1), 2.5, i64(1)
	summarizeRetransmits(q2, nil)
	if qs := compareQueues(rep); len(qs) != 1 || !qs[0].Met {
		t.Errorf("want met: %+v", qs)
	}
	// Only one deployment ran: no comparison.
	rep.Results = []*cell{q1}
	if qs := compareQueues(rep); qs != nil {
		t.Errorf("comparison without q2: %+v", qs)
	}
}
