// Package tuntest is the contract test suite every gozone Tun implementation
// must pass (in-memory pair, gVisor netstack device, Linux TUN), plus small
// builders and a checking parser for the IPv4/IPv6 UDP, TCP and ICMP packets
// the suite sends.
//
// The suite drives very different devices through one Harness: the device
// under test (Dev) and two functions that reach its far side. For a memory
// pair the far side is the other end and packets pass byte for byte (Raw).
// For a kernel TUN or a userspace stack the far side is an IP stack reached
// through sockets, so only UDP datagrams can be produced and observed there;
// the harness then sends and receives the UDP payloads with sockets and the
// suite compares addresses, ports, payloads and sizes instead of bytes.
//
// Directions, as seen from the device's user (connlib):
//
//	Inject  --(far side emits)-->  Dev.PollRecvMany   "out" in the suite's names
//	Dev.Send --(far side takes)--> Collect            "in"
//
// Every packet the suite sends carries a marker in its payload (magic, run
// id, flow, sequence number and a byte pattern), so unrelated traffic a real
// stack emits on its own (IPv6 router solicitations, MLD reports, ...) is
// ignored and corruption is detected.
//
// Usage, from a test of the implementation:
//
//	func TestContract(t *testing.T) {
//		tuntest.Run(t, func(t *testing.T) *tuntest.Harness {
//			a, b := tun.NewMemPair(tun.MemConfig{})
//			t.Cleanup(func() { a.Close(); b.Close() })
//			return &tuntest.Harness{Dev: a, ErrClosed: tun.ErrClosed, Raw: true, ...}
//		})
//	}
package tuntest

import (
	"context"
	"net/netip"
)

// Device is exactly the method set of connlib.Tun, declared again here
// because package tun (and this suite) must not import connlib. The full
// contract is documented on connlib.Tun; the suite checks it.
type Device interface {
	PollRecvMany(ctx context.Context, bufs [][]byte, sizes []int, offset int) (n int, err error)
	SendReady(ctx context.Context) error
	Send(bufs [][]byte, offset int) (int, error)
	BatchSize() int
	MTU() int
	Name() string
	Close() error
}

// Addrs is one address family's pair of addresses the suite uses.
type Addrs struct {
	// Local is the address behind the device: the address of the IP stack
	// the device feeds (the kernel's address on a TUN, the netstack's own
	// address). Packets the device emits (PollRecvMany) come from Local;
	// packets given to Send go to Local.
	Local netip.Addr
	// Remote is an address on the tunnel side: packets to it are routed
	// into the device by the far side's stack. Packets given to Send come
	// from Remote.
	Remote netip.Addr
}

// Harness is what the suite needs to drive one fresh device. newHarness is
// called once per subtest; it must register cleanup with t.Cleanup (the
// device may already have been closed by the suite by then; Close is
// idempotent).
type Harness struct {
	// Dev is the device under test.
	Dev Device

	// ErrClosed is the implementation's "device closed" sentinel; the suite
	// checks errors.Is(err, ErrClosed) after Close.
	ErrClosed error

	// V4 and V6 give the addresses per family. A zero Addrs (invalid Local)
	// means the family is not exercised. At least one must be set.
	V4, V6 Addrs

	// ListenPort is the UDP port on Local on which Collect receives (a
	// socket harness must have it bound before returning the Harness). The
	// suite sends every UDP packet of the "in" direction to Local:ListenPort.
	// 0 means 5555, which is fine for Raw harnesses.
	ListenPort uint16

	// Raw says Inject and Collect carry complete packets byte for byte (a
	// memory pair, a TUN with a raw peer). The suite then also sends TCP and
	// ICMP packets and compares bytes. When false, the suite sends only UDP
	// and compares addresses, ports, payload and total length.
	Raw bool

	// Stack says an IP stack owning Local sits on the far side and answers
	// ICMP echo requests to Local and TCP SYNs to a closed port of Local
	// (with RST). The suite then checks that such replies come back out of
	// PollRecvMany. True for a kernel TUN and the netstack device.
	Stack bool

	// Inject makes pkts appear, in order, at Dev.PollRecvMany. The suite
	// passes at most Dev.BatchSize() packets per call and waits until it has
	// read them before the next call. Each is a complete IP packet from
	// Local to Remote built by this package. A Raw harness delivers them
	// unchanged (e.g. the peer's SendReady then Send) and returns an error
	// if it cannot deliver all. A socket harness sends each UDP payload
	// (Parse(pkt).Payload) from a UDP socket bound to Local:srcport (binding
	// it on first use) to Remote:dstport.
	Inject func(pkts [][]byte) error

	// Collect returns the next packet that came through Dev.Send, blocking
	// until there is one or ctx is done (then it returns ctx.Err()). A Raw
	// harness returns the packet as received (a fresh slice; the suite
	// keeps it). A socket harness receives datagrams on Local:ListenPort and
	// returns UDP(from, Local:ListenPort, payload), rebuilt with this
	// package. It is called from one goroutine at a time, possibly while
	// Dev.Send runs on another. A socket harness must size its receive
	// buffer for at least two batches of MTU-sized packets (SO_RCVBUF), or
	// the kernel drops what the suite sends.
	Collect func(ctx context.Context) ([]byte, error)
}

func (h *Harness) listenPort() uint16 {
	if h.ListenPort == 0 {
		return 5555
	}
	return h.ListenPort
}

func (h *Harness) families() []family {
	var fs []family
	if h.V4.Local.IsValid() {
		fs = append(fs, family{"v4", h.V4})
	}
	if h.V6.Local.IsValid() {
		fs = append(fs, family{"v6", h.V6})
	}
	return fs
}

type family struct {
	name string
	Addrs
}
