package netstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/gozone/gozone/tun"
)

// Ping sends one ICMP echo request to dst from the stack (through the
// tunnel) and waits for the matching reply; it returns the round-trip
// time. It is the client-side way to check that a resource answers pings
// through a (userspace) gateway, whose forwarder pings it from the host.
func (d *Device) Ping(ctx context.Context, dst netip.Addr, seq uint16, data []byte) (time.Duration, error) {
	if d.isClosed.Load() {
		return 0, tun.ErrClosed
	}
	fa, np, err := d.fullAddr(netip.AddrPortFrom(dst, 0))
	if err != nil {
		return 0, err
	}
	tp, reqType := icmp.ProtocolNumber4, byte(header.ICMPv4Echo)
	replyType := byte(header.ICMPv4EchoReply)
	if np == ipv6.ProtocolNumber {
		tp, reqType, replyType = icmp.ProtocolNumber6, byte(header.ICMPv6EchoRequest), byte(header.ICMPv6EchoReply)
	}
	var wq waiter.Queue
	ep, terr := d.stack.NewEndpoint(tp, np, &wq)
	if terr != nil {
		return 0, fmt.Errorf("netstack: ping socket: %s", terr)
	}
	defer ep.Close()
	entry, notify := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)

	msg := make([]byte, 8+len(data))
	msg[0] = reqType
	binary.BigEndian.PutUint16(msg[6:8], seq)
	copy(msg[8:], data)
	start := time.Now()
	var r bytes.Reader
	r.Reset(msg)
	if _, terr := ep.Write(&r, tcpip.WriteOptions{To: &fa}); terr != nil {
		return 0, fmt.Errorf("netstack: ping %v: %s", dst, terr)
	}
	for {
		var buf bytes.Buffer
		_, terr := ep.Read(&buf, tcpip.ReadOptions{})
		if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
			select {
			case <-notify:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-d.closed:
				return 0, tun.ErrClosed
			}
		}
		if terr != nil {
			return 0, fmt.Errorf("netstack: ping %v: %s", dst, terr)
		}
		b := buf.Bytes()
		if len(b) >= 8 && b[0] == replyType && binary.BigEndian.Uint16(b[6:8]) == seq && bytes.Equal(b[8:], data) {
			return time.Since(start), nil
		}
	}
}
