//go:build linux

package tun

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLinuxLoop measures bulk TCP through tunLoop (namespace A ->
// device -> pump -> device -> namespace B): 4 parallel streams from A to
// a discarding server in B, 64 KiB per op. It reports throughput (Gbit/s),
// packets moved by the pumps per second (both directions, so ACKs count),
// process-wide allocations per moved packet and the CPU steal seen during
// the run. The machine is shared: compare runs taken back to back.
//
//	go test -run XXX -bench LinuxLoop -benchtime 2000x ./tun/
func BenchmarkLinuxLoop(b *testing.B) {
	benchConfigs(b, benchLoop)
}

func benchLoop(b *testing.B, cfg LinuxConfig) {
	const (
		streams = 4
		chunk   = 64 << 10
	)
	l := newTunLoop(b, cfg)
	ln := listenTCP(b, l.nsB, netip.AddrPortFrom(loopB4, 8100))
	var recvd sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			recvd.Add(1)
			go func() {
				defer recvd.Done()
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	conns := make([]net.Conn, streams)
	for i := range conns {
		conns[i] = dialTCP(b, l.nsA, netip.AddrPortFrom(loopB4, 8100))
	}
	buf := make([]byte, chunk)
	// Warm up: connections past slow start, pools filled.
	for _, c := range conns {
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}

	b.SetBytes(chunk)
	b.ReportAllocs()
	fwd0 := l.fwd.Load()
	steal0, total0 := cpuSteal()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, streams)
	for s, c := range conns {
		n := b.N / streams
		if s < b.N%streams {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
			for range n {
				if _, err := c.Write(buf); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		c.Close() // the receivers finish once they have read everything
	}
	recvd.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	select {
	case err := <-errc:
		b.Fatal(err)
	default:
	}
	steal1, total1 := cpuSteal()
	pkts := float64(l.fwd.Load() - fwd0)
	sec := elapsed.Seconds()
	b.ReportMetric(float64(b.N)*chunk*8/sec/1e9, "Gbit/s")
	b.ReportMetric(pkts/sec, "pkts/s")
	if pkts > 0 {
		b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/pkts, "allocs/pkt")
	}
	if total1 > total0 {
		b.ReportMetric(100*float64(steal1-steal0)/float64(total1-total0), "steal%")
	}
}

// cpuSteal returns the steal and total jiffies of all CPUs (/proc/stat).
func cpuSteal() (steal, total uint64) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0
	}
	fields := strings.Fields(sc.Text()) // cpu user nice system idle iowait irq softirq steal ...
	for i, s := range fields[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		total += v
		if i == 7 {
			steal = v
		}
	}
	return steal, total
}

// BenchmarkLinuxUDP measures small-packet rate through tunLoop: 4 UDP
// flows of 64-byte datagrams from A to a socket in B, one op per datagram.
// Senders are not paced, so what exceeds the path is dropped; "delivered/s"
// counts what B's socket received and "loss%" the rest.
//
//	go test -run XXX -bench LinuxUDP -benchtime 200000x ./tun/
func BenchmarkLinuxUDP(b *testing.B) {
	benchConfigs(b, benchUDP)
}

func benchUDP(b *testing.B, cfg LinuxConfig) {
	const flows = 4
	l := newTunLoop(b, cfg)
	dst := netip.AddrPortFrom(loopB4, 8200)
	srv := udpIn(b, l.nsB, dst)
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_ = srv.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := srv.ReadFromUDPAddrPort(buf); err != nil {
				return // quiet for a second: the run is over
			}
			got.Add(1)
		}
	}()
	socks := make([]*net.UDPConn, flows)
	for i := range socks {
		socks[i] = udpIn(b, l.nsA, netip.AddrPortFrom(loopA4, 0))
	}
	payload := make([]byte, 64)
	b.ReportAllocs()
	steal0, total0 := cpuSteal()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for s, c := range socks {
		n := b.N / flows
		if s < b.N%flows {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				_, _ = c.WriteToUDPAddrPort(payload, dst)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	<-done
	steal1, total1 := cpuSteal()
	b.ReportMetric(float64(got.Load())/elapsed.Seconds(), "delivered/s")
	b.ReportMetric(100*(1-float64(got.Load())/float64(b.N)), "loss%")
	if total1 > total0 {
		b.ReportMetric(100*float64(steal1-steal0)/float64(total1-total0), "steal%")
	}
}

// benchConfigs runs bench for 1, 2 and 4 queues, each with and without
// offloads, as sub-benchmarks queues<N>/{offloads,nooffloads}.
func benchConfigs(b *testing.B, bench func(*testing.B, LinuxConfig)) {
	for _, q := range []int{1, 2, 4} {
		for _, off := range []bool{false, true} {
			name := fmt.Sprintf("queues%d/offloads", q)
			if off {
				name = fmt.Sprintf("queues%d/nooffloads", q)
			}
			b.Run(name, func(b *testing.B) {
				bench(b, LinuxConfig{Queues: q, DisableOffloads: off})
			})
		}
	}
}
