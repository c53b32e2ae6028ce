package tuntest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
)

// markLen is the size of the marker at the start of every suite payload:
// magic, run id, flow, sequence number.
const markLen = 16

var magic = [4]byte{'t', 'T', '0', '1'}

// fillPayload writes the marker and a sequence-dependent byte pattern.
func fillPayload(p []byte, run, flow, seq uint32) {
	copy(p, magic[:])
	binary.BigEndian.PutUint32(p[4:], run)
	binary.BigEndian.PutUint32(p[8:], flow)
	binary.BigEndian.PutUint32(p[12:], seq)
	for i := markLen; i < len(p); i++ {
		p[i] = byte(uint32(i)*7 + seq)
	}
}

// readPayload reports whether p carries this run's marker (ours) and, if
// so, whether the pattern after it is intact.
func readPayload(p []byte, run uint32) (flow, seq uint32, ours bool, err error) {
	if len(p) < markLen || !bytes.Equal(p[:4], magic[:]) || binary.BigEndian.Uint32(p[4:]) != run {
		return 0, 0, false, nil
	}
	flow = binary.BigEndian.Uint32(p[8:])
	seq = binary.BigEndian.Uint32(p[12:])
	for i := markLen; i < len(p); i++ {
		if p[i] != byte(uint32(i)*7+seq) {
			return flow, seq, true, fmt.Errorf("payload of flow %d seq %d corrupted at byte %d", flow, seq, i)
		}
	}
	return flow, seq, true, nil
}

type kind int

const (
	kindUDP kind = iota
	kindTCP
	kindICMP
)

func (k kind) String() string {
	return [...]string{"udp", "tcp", "icmp"}[k]
}

func (k kind) l4HeaderLen() int {
	switch k {
	case kindTCP:
		return TCPHeaderLen
	case kindICMP:
		return ICMPHeaderLen
	}
	return UDPHeaderLen
}

// builder makes the suite's packets for one harness.
type builder struct {
	h   *Harness
	run uint32
	mtu int
}

func newBuilder(h *Harness) *builder {
	return &builder{h: h, run: rand.Uint32(), mtu: h.Dev.MTU()}
}

func (b *builder) kinds() []kind {
	if b.h.Raw {
		return []kind{kindUDP, kindTCP, kindICMP}
	}
	return []kind{kindUDP}
}

// kindOf spreads flows over the kinds the harness supports.
func (b *builder) kindOf(flow uint32) kind {
	ks := b.kinds()
	return ks[int(flow)%len(ks)]
}

func (b *builder) minSize(f family, k kind) int {
	return IPHeaderLen(f.Local) + k.l4HeaderLen() + markLen
}

// sizeFor returns a packet size for the i-th packet of a batch, cycling
// through small, typical and MTU-sized packets.
func (b *builder) sizeFor(i int, f family, k kind) int {
	steps := [...]int{0, 100, 300, 576, 1000, b.mtu - 1, b.mtu}
	s := steps[i%len(steps)]
	s = max(s, b.minSize(f, k))
	return min(s, b.mtu)
}

func (b *builder) payload(f family, k kind, flow, seq uint32, size int) []byte {
	n := max(size-IPHeaderLen(f.Local)-k.l4HeaderLen(), markLen)
	p := make([]byte, n)
	fillPayload(p, b.run, flow, seq)
	return p
}

// out builds a packet the far side emits towards the tunnel: Local to
// Remote, so it comes out of Dev.PollRecvMany.
func (b *builder) out(f family, k kind, flow, seq uint32, size int) []byte {
	p := b.payload(f, k, flow, seq, size)
	src := netip.AddrPortFrom(f.Local, uint16(40000+flow))
	dst := netip.AddrPortFrom(f.Remote, uint16(9000+flow))
	switch k {
	case kindTCP:
		return TCP(src, dst, seq*1000, 1, TCPAck|TCPPsh, p)
	case kindICMP:
		return ICMPEcho(f.Local, f.Remote, false, uint16(0x100+flow), uint16(seq), p)
	}
	return UDP(src, dst, p)
}

// in builds a packet for Dev.Send: Remote to Local:ListenPort.
func (b *builder) in(f family, k kind, flow, seq uint32, size int) []byte {
	p := b.payload(f, k, flow, seq, size)
	src := netip.AddrPortFrom(f.Remote, uint16(50000+flow))
	dst := netip.AddrPortFrom(f.Local, b.h.listenPort())
	switch k {
	case kindTCP:
		return TCP(src, dst, seq*1000, 1, TCPAck|TCPPsh, p)
	case kindICMP:
		return ICMPEcho(f.Remote, f.Local, false, uint16(0x100+flow), uint16(seq), p)
	}
	return UDP(src, dst, p)
}

// expect tracks the packets a test waits for, per flow and in order, and
// checks each packet offered to it.
type expect struct {
	raw       bool
	run       uint32
	flows     map[uint32]*flowState
	remaining int
	ordered   bool
}

type flowState struct {
	pkts [][]byte
	seqs []uint32
	next int
	got  map[uint32]bool // unordered mode
}

func (b *builder) expect() *expect {
	return &expect{raw: b.h.Raw, run: b.run, flows: map[uint32]*flowState{}, ordered: true}
}

// add registers pkts (built by the builder) as expected, in this order per
// flow.
func (e *expect) add(pkts ...[]byte) {
	for _, pkt := range pkts {
		p, err := Parse(pkt)
		if err != nil {
			panic("tuntest: suite built a bad packet: " + err.Error())
		}
		flow, seq, _, _ := readPayload(p.Payload, e.run)
		fs := e.flows[flow]
		if fs == nil {
			fs = &flowState{got: map[uint32]bool{}}
			e.flows[flow] = fs
		}
		fs.pkts = append(fs.pkts, pkt)
		fs.seqs = append(fs.seqs, seq)
		e.remaining++
	}
}

func (e *expect) done() bool { return e.remaining == 0 }

// offer checks one received packet. Packets that are not the suite's (no
// marker of this run) are ignored; a suite packet that is corrupted,
// unexpected, duplicated or out of order is an error.
func (e *expect) offer(got []byte) error {
	p, err := Parse(got)
	if err != nil {
		var mk [8]byte
		copy(mk[:], magic[:])
		binary.BigEndian.PutUint32(mk[4:], e.run)
		if bytes.Contains(got, mk[:]) {
			return fmt.Errorf("suite packet (%d bytes) arrived damaged: %v", len(got), err)
		}
		return nil // someone else's traffic
	}
	flow, seq, ours, err := readPayload(p.Payload, e.run)
	if !ours {
		return nil
	}
	if err != nil {
		return err
	}
	fs := e.flows[flow]
	if fs == nil {
		return fmt.Errorf("unexpected packet: flow %d seq %d (%d bytes)", flow, seq, len(got))
	}
	idx := fs.next
	if !e.ordered {
		idx = -1
		for i, s := range fs.seqs {
			if s == seq && !fs.got[s] {
				idx = i
				break
			}
		}
		if idx < 0 {
			return fmt.Errorf("duplicate or unexpected packet: flow %d seq %d", flow, seq)
		}
	}
	if idx >= len(fs.pkts) {
		return fmt.Errorf("duplicate or unexpected packet: flow %d seq %d", flow, seq)
	}
	if fs.seqs[idx] != seq {
		return fmt.Errorf("flow %d out of order or lost: got seq %d, want seq %d", flow, seq, fs.seqs[idx])
	}
	want := fs.pkts[idx]
	if e.raw {
		if !bytes.Equal(got, want) {
			return fmt.Errorf("flow %d seq %d: packet differs from what was sent (%d bytes, want %d)", flow, seq, len(got), len(want))
		}
	} else {
		w, _ := Parse(want)
		if p.Proto != w.Proto || p.Src != w.Src || p.Dst != w.Dst || p.Len != w.Len || !bytes.Equal(p.Payload, w.Payload) {
			return fmt.Errorf("flow %d seq %d: got proto %d %v->%v len %d, want proto %d %v->%v len %d",
				flow, seq, p.Proto, p.Src, p.Dst, p.Len, w.Proto, w.Src, w.Dst, w.Len)
		}
	}
	fs.got[seq] = true
	if e.ordered {
		fs.next++
	}
	e.remaining--
	return nil
}

// missing describes what has not arrived yet.
func (e *expect) missing() string {
	var parts []string
	for flow, fs := range e.flows {
		var n int
		first := -1
		for i, s := range fs.seqs {
			if (e.ordered && i >= fs.next) || (!e.ordered && !fs.got[s]) {
				n++
				if first < 0 {
					first = int(s)
				}
			}
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("flow %d: %d packets from seq %d", flow, n, first))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
