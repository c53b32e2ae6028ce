package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/gozone/gozone/internal/topo"
)

// iperfPort is the port of every iperf3 server the bench starts (one per
// namespace, so they never clash).
const iperfPort = 5201

// errNoIperf says how to get iperf3, the traffic generator.
var errNoIperf = errors.New("iperf3 not found in PATH: install it (Debian/Ubuntu: apt-get install iperf3)")

// test is one iperf3 measurement shape.
type test struct {
	Name    string
	Args    []string
	UDP     bool
	Summary string
}

func tests(udpRate string) []test {
	return []test{
		{Name: "tcp", Summary: "TCP, 1 stream, client→resource"},
		{Name: "tcp-reverse", Args: []string{"-R"}, Summary: "TCP, 1 stream, resource→client (-R)"},
		{Name: "tcp-4", Args: []string{"-P", "4"}, Summary: "TCP, 4 streams"},
		// 1200-byte datagrams fit the 1280-byte tunnel MTU with headers.
		{Name: "udp", Args: []string{"-u", "-b", udpRate, "-l", "1200"}, UDP: true, Summary: "UDP at " + udpRate + "bit/s, loss"},
	}
}

// iperfResult is what the bench keeps of one iperf3 run.
type iperfResult struct {
	Gbps  float64 `json:"gbps"` // received
	Bytes uint64  `json:"bytes"`
	// Retransmits is the TCP sender's count (iperf3's
	// end.sum_sent.retransmits; with -R the server's, which iperf3 passes
	// back). nil for UDP, or when iperf3 did not report one.
	Retransmits *int64  `json:"retransmits,omitempty"`
	LostPercent float64 `json:"lost_percent,omitempty"`
	Packets     int64   `json:"packets,omitempty"`
}

// iperfJSON is the part of `iperf3 -J` the bench reads.
type iperfJSON struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			Bytes       uint64  `json:"bytes"`
			BPS         float64 `json:"bits_per_second"`
			Retransmits *int64  `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes uint64  `json:"bytes"`
			BPS   float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		// UDP: the summary with loss as the receiver saw it.
		Sum struct {
			Bytes       uint64  `json:"bytes"`
			BPS         float64 `json:"bits_per_second"`
			LostPackets int64   `json:"lost_packets"`
			Packets     int64   `json:"packets"`
			LostPercent float64 `json:"lost_percent"`
		} `json:"sum"`
	} `json:"end"`
}

func parseIperf(out []byte, udp bool) (iperfResult, error) {
	var j iperfJSON
	if err := json.Unmarshal(out, &j); err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 output is not JSON (%v): %.200s", err, out)
	}
	if j.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", j.Error)
	}
	if udp {
		s := j.End.Sum
		r := iperfResult{LostPercent: s.LostPercent, Packets: s.Packets}
		if s.Packets > 0 {
			recv := float64(s.Packets-s.LostPackets) / float64(s.Packets)
			r.Gbps = s.BPS * recv / 1e9
			r.Bytes = uint64(float64(s.Bytes) * recv)
		}
		return r, nil
	}
	return iperfResult{
		Gbps:        j.End.SumReceived.BPS / 1e9,
		Bytes:       j.End.SumReceived.Bytes,
		Retransmits: j.End.SumSent.Retransmits,
	}, nil
}

// startIperfServer runs `iperf3 -s` in h and waits (bounded) until it
// listens.
func startIperfServer(h *topo.Host) error {
	cmd := exec.Command("iperf3", "-s", "-p", strconv.Itoa(iperfPort))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	p, err := h.Start(cmd)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.Done():
			return fmt.Errorf("iperf3 server in %s exited: %s", h.Name, out.String())
		default:
		}
		ok, err := listening(h, iperfPort)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("iperf3 server in %s not listening after 10 s", h.Name)
}

// listening reports whether a TCP socket listens on port in h's namespace.
// /proc/thread-self/net follows the reading thread's namespace (unlike
// /proc/net, which follows the process's).
func listening(h *topo.Host, port int) (bool, error) {
	want := []byte(fmt.Sprintf(":%04X 00000000", port))
	found := false
	err := h.Do(func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			for _, line := range bytes.Split(b, []byte("\n")) {
				// state 0A is LISTEN
				if bytes.Contains(line, want) && bytes.Contains(line, []byte(" 0A ")) {
					found = true
				}
			}
		}
		return nil
	})
	return found, err
}

// runIperf runs one iperf3 client in from towards to.
func runIperf(ctx context.Context, from *topo.Host, to netip.Addr, tc test, d time.Duration) (iperfResult, error) {
	secs := strconv.Itoa(int((d + time.Second - 1) / time.Second))
	args := append([]string{"-c", to.String(), "-p", strconv.Itoa(iperfPort), "-t", secs, "-J", "--connect-timeout", "5000"}, tc.Args...)
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := from.Run(ctx, "iperf3", args...)
	res, perr := parseIperf(out, tc.UDP)
	if perr != nil {
		return res, errors.Join(perr, err)
	}
	return res, err
}
