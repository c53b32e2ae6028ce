package connlib

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// usCPU returns the process's user+system CPU time. Benchmarks report CPU
// seconds per GB next to Gbit/s: on a shared machine the throughput swings
// with other load, the CPU cost much less.
func usCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkUserspaceTCP: bulk TCP upload, userspace client (gVisor) →
// WireGuard over ICE on loopback → userspace gateway (gVisor, forwarder)
// → host socket → sink on 127.0.0.1. One connection per benchmark run;
// b.N chunks of 64 KiB. Reports Gbit/s.
func BenchmarkUserspaceTCP(b *testing.B) {
	f := usSetup(b, nil)
	ctx := usCtx(b)
	c, err := f.client.DialContext(ctx, "tcp", netip.AddrPortFrom(usResourceIP, f.sink).String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	start, cpu0 := time.Now(), usCPU()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	_ = c.(interface{ CloseWrite() error }).CloseWrite()
	var buf [8]byte
	_ = c.SetReadDeadline(time.Now().Add(usWait))
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		b.Fatalf("sink count: %v", err)
	}
	elapsed, cpu := time.Since(start), usCPU()-cpu0
	b.StopTimer()
	if got, want := binary.BigEndian.Uint64(buf[:]), uint64(b.N*len(chunk)); got != want {
		b.Fatalf("sink read %d bytes, want %d", got, want)
	}
	b.ReportMetric(float64(b.N*len(chunk))*8/elapsed.Seconds()/1e9, "Gbit/s")
	b.ReportMetric(cpu.Seconds()/(float64(b.N*len(chunk))/1e9), "cpu-s/GB")
}

// BenchmarkUserspaceHTTPGet: HTTP GETs through the http.Transport of a
// userspace client, keep-alive connection reused. "1MiB" downloads 1 MiB
// per request (throughput), "small" a short greeting (requests/s).
func BenchmarkUserspaceHTTPGet(b *testing.B) {
	f := usSetup(b, nil)
	for _, bc := range []struct {
		name string
		path string
		size int64
	}{{"1MiB", "/bytes?n=1048576", 1 << 20}, {"small", "/", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			tr := f.client.Transport()
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: usWait}
			url := fmt.Sprintf("http://%v%s", netip.AddrPortFrom(usResourceIP, f.webPort), bc.path)
			get := func() int64 {
				resp, err := hc.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("GET: %d %v", resp.StatusCode, err)
				}
				return n
			}
			get() // connection and authorization set up outside the timing
			if bc.size > 0 {
				b.SetBytes(bc.size)
			}
			b.ResetTimer()
			start, cpu0 := time.Now(), usCPU()
			var total int64
			for i := 0; i < b.N; i++ {
				total += get()
			}
			elapsed, cpu := time.Since(start), usCPU()-cpu0
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			if bc.size > 0 {
				b.ReportMetric(float64(total)*8/elapsed.Seconds()/1e9, "Gbit/s")
				b.ReportMetric(cpu.Seconds()/(float64(total)/1e9), "cpu-s/GB")
			} else {
				b.ReportMetric(cpu.Seconds()*1e6/float64(b.N), "cpu-µs/req")
			}
		})
	}
}
