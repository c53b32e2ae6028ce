package connlib

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib/ippacket"
	"github.com/gozone/gozone/tun"
)

// lanEcho answers every UDP packet for dst on the gateway's resource side
// until ctx ends (the bench's echo server, in memory).
func lanEcho(ctx context.Context, lan *tun.MemTun, dst netip.AddrPort) {
	for ctx.Err() == nil {
		p, ok := memTryRecv(lan, 200*time.Millisecond, udpTo(dst))
		if !ok {
			continue
		}
		reply := clientUDPPacket(nil, dst, netip.AddrPortFrom(p.Src(), p.SrcPort()), p.Payload()[8:])
		_, _ = lan.Send([][]byte{reply}, 0)
	}
}

// restartProbe starts a client session with a fixed firezone id (as a
// restarted headless client keeps its id file), sends a UDP probe through
// the tunnel every second (as examples/bench does) and returns the time
// from the first probe to the first reply, then stops the client the way
// SIGTERM does (goodbye, then exit).
func restartProbe(t *testing.T, url string, dst netip.AddrPort, limit time.Duration) (time.Duration, error) {
	app, dev := tun.NewMemPair(tun.MemConfig{Name: "client"})
	defer app.Close()
	c, err := NewClient(ClientConfig{
		Tun: dev, APIURL: url, Token: ctClientToken, FirezoneID: "laptop-restarted", Name: "laptop",
		Logger: clientTestLogger(t, "client"), HostIP: netip.MustParseAddr("127.0.0.1"),
	})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(clientWait):
			t.Errorf("client did not stop")
		}
	}()
	select {
	case <-c.Ready():
	case err := <-done:
		done <- err
		return 0, fmt.Errorf("client ended before init: %v", err)
	case <-time.After(clientWait):
		return 0, fmt.Errorf("client: no init")
	}
	src := netip.AddrPortFrom(c.Status().IPv4, 43000)
	start := time.Now()
	for time.Since(start) < limit {
		if _, err := app.Send([][]byte{clientUDPPacket(nil, src, dst, []byte("setup"))}, 0); err != nil {
			return 0, err
		}
		if _, ok := memTryRecv(app, time.Second, udpTo(src)); ok {
			return time.Since(start), nil
		}
	}
	return 0, fmt.Errorf("no reply within %v", limit)
}

// TestClientQuickRestarts restarts a client with the same id against one
// gateway session many times in a row, as examples/bench's set-up
// measurement does, and requires every fresh connection to carry a reply.
// It logs the median set-up time (first packet to first reply). The
// number of rounds is CONNLIB_RESTARTS (default 12).
func TestClientQuickRestarts(t *testing.T) {
	rounds := 12
	if s := os.Getenv("CONNLIB_RESTARTS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			rounds = n
		}
	}
	p := startClientTestPortal(t, "")
	_, lan := startSessionGateway(t, p)
	dst := netip.MustParseAddrPort("10.99.0.5:7")
	ctx, cancel := context.WithCancel(context.Background())
	echoDone := make(chan struct{})
	go func() { defer close(echoDone); lanEcho(ctx, lan, dst) }()
	t.Cleanup(func() { cancel(); <-echoDone })

	var times []time.Duration
	for i := 0; i < rounds; i++ {
		dt, err := restartProbe(t, p.URL(), dst, 20*time.Second)
		if err != nil {
			t.Fatalf("round %d: %v (earlier set-up times %v)", i, err, times)
		}
		times = append(times, dt)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("set-up over %d quick restarts: median %v, min %v, max %v", rounds, times[len(times)/2], times[0], times[len(times)-1])
}

var _ = ippacket.ProtoUDP
