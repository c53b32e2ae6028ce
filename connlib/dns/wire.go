package dns

import (
	"encoding/binary"
	"errors"
	"net/netip"

	mdns "github.com/miekg/dns"
)

// The stub's hot path reads and writes DNS wire format by hand instead of
// through mdns.Msg: a query for a resource name must be answered without
// per-query garbage, and Msg.Unpack allocates a Msg, a Question and the name
// string every time. miekg/dns still provides the constants, does the slow
// paths, and is what the tests use to check every answer.

// Transport says how a DNS message was framed.
type Transport uint8

const (
	// TransportUDP: the bytes are one DNS message (a UDP payload).
	TransportUDP Transport = iota
	// TransportTCP: the bytes are one DNS message preceded by its 2-byte
	// big-endian length (RFC 1035 §4.2.2); responses are framed the same way.
	TransportTCP
)

func (t Transport) String() string {
	if t == TransportTCP {
		return "tcp"
	}
	return "udp"
}

// Sentinel errors for messages the stub cannot work with.
var (
	// ErrShortMessage: fewer than 12 bytes, or a TCP frame whose length
	// prefix disagrees with its size. No reply is possible; drop it.
	ErrShortMessage = errors.New("dns: message too short")
	// ErrNotQuery: the QR bit is set (a response sent to the stub). Drop it.
	ErrNotQuery = errors.New("dns: message is not a query")
	// ErrMalformed: the header is readable but the rest is not.
	ErrMalformed = errors.New("dns: malformed message")
	// ErrShortBuffer: the output buffer cannot hold the reply.
	ErrShortBuffer = errors.New("dns: output buffer too small")
)

const (
	headerLen = 12

	flagQR     = 1 << 15
	flagRD     = 1 << 8
	flagRA     = 1 << 7
	flagCD     = 1 << 4
	opcodeMask = 0xf << 11

	optDO = 1 << 15 // DO bit in the OPT RR's TTL field

	// ednsUDPSize is the UDP payload size advertised in our OPT records: the
	// DNS flag day 2020 value, safe on every path.
	ednsUDPSize = 1232

	maxWireName = 255
)

// MaxResponseSize is the largest reply HandleQuery writes (including the TCP
// length prefix). An out buffer of this size always suffices.
const MaxResponseSize = 2 + 512

// query is what the stub needs from a query message.
type query struct {
	id, flags     uint16
	qtype, qclass uint16
	qEnd          int    // offset just past the question
	name          []byte // lower-case presentation form without trailing dot, in scratch
	matchable     bool   // false if a label holds a byte that makes the text form ambiguous
	hasOPT, do    bool
}

// parseQuery reads the header, the single question and looks for an OPT
// record. Errors: ErrShortMessage, ErrNotQuery (header unusable or a response:
// drop), ErrMalformed (header fine, rest broken: answer FORMERR). q.id and
// q.flags are valid whenever the error is ErrMalformed.
func parseQuery(msg []byte, scratch *[maxWireName]byte) (q query, err error) {
	if len(msg) < headerLen {
		return q, ErrShortMessage
	}
	q.id = binary.BigEndian.Uint16(msg[0:])
	q.flags = binary.BigEndian.Uint16(msg[2:])
	if q.flags&flagQR != 0 {
		return q, ErrNotQuery
	}
	qd := binary.BigEndian.Uint16(msg[4:])
	an := binary.BigEndian.Uint16(msg[6:])
	ns := binary.BigEndian.Uint16(msg[8:])
	ar := binary.BigEndian.Uint16(msg[10:])
	if qd != 1 {
		return q, ErrMalformed
	}
	off := headerLen
	n := 0
	wire := 1 // the root label
	q.matchable = true
	for {
		if off >= len(msg) {
			return q, ErrMalformed
		}
		l := int(msg[off])
		off++
		if l == 0 {
			break
		}
		if l&0xc0 != 0 { // no compression (or extended labels) in a question
			return q, ErrMalformed
		}
		wire += 1 + l
		if off+l > len(msg) || wire > maxWireName { // RFC 1035: 255 bytes on the wire
			return q, ErrMalformed
		}
		if n > 0 {
			scratch[n] = '.'
			n++
		}
		for _, c := range msg[off : off+l] {
			if c == '.' || c <= ' ' || c >= 0x7f {
				q.matchable = false
			}
			scratch[n] = lower(c)
			n++
		}
		off += l
	}
	if off+4 > len(msg) {
		return q, ErrMalformed
	}
	q.qtype = binary.BigEndian.Uint16(msg[off:])
	q.qclass = binary.BigEndian.Uint16(msg[off+2:])
	off += 4
	q.qEnd = off
	q.name = scratch[:n]

	// Skip answer and authority records (a query should have none), then look
	// for OPT among the additional records.
	for i := 0; i < int(an)+int(ns)+int(ar); i++ {
		var typ uint16
		var ttl uint32
		off, typ, ttl, err = skipRR(msg, off)
		if err != nil {
			return q, err
		}
		if i >= int(an)+int(ns) && typ == mdns.TypeOPT {
			q.hasOPT = true
			q.do = ttl&optDO != 0
		}
	}
	return q, nil
}

func skipRR(msg []byte, off int) (next int, typ uint16, ttl uint32, err error) {
	for {
		if off >= len(msg) {
			return 0, 0, 0, ErrMalformed
		}
		l := int(msg[off])
		switch {
		case l == 0:
			off++
		case l&0xc0 == 0xc0:
			off += 2
		case l&0xc0 != 0:
			return 0, 0, 0, ErrMalformed
		default:
			off += 1 + l
			continue
		}
		break
	}
	if off+10 > len(msg) {
		return 0, 0, 0, ErrMalformed
	}
	typ = binary.BigEndian.Uint16(msg[off:])
	ttl = binary.BigEndian.Uint32(msg[off+4:])
	rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
	off += 10 + rdlen
	if off > len(msg) {
		return 0, 0, 0, ErrMalformed
	}
	return off, typ, ttl, nil
}

// respWriter appends a reply into a caller-owned buffer without allocating.
type respWriter struct {
	buf []byte
	n   int
	ok  bool
}

func (w *respWriter) put(b ...byte) {
	if !w.ok || w.n+len(b) > len(w.buf) {
		w.ok = false
		return
	}
	w.n += copy(w.buf[w.n:], b)
}

func (w *respWriter) bytes(b []byte) { w.put(b...) }

func (w *respWriter) str(s string) {
	if !w.ok || w.n+len(s) > len(w.buf) {
		w.ok = false
		return
	}
	w.n += copy(w.buf[w.n:], s)
}

func (w *respWriter) u16(v uint16) { w.put(byte(v>>8), byte(v)) }

func (w *respWriter) u32(v uint32) { w.put(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)) }

// header writes a response header for q with the given rcode and counts.
// Opcode, RD and CD are copied from the query; RA is set (we recurse).
func (w *respWriter) header(q *query, rcode int, qd, an, ar uint16) {
	flags := uint16(flagQR|flagRA) | q.flags&(opcodeMask|flagRD|flagCD) | uint16(rcode&0xf)
	w.u16(q.id)
	w.u16(flags)
	w.u16(qd)
	w.u16(an)
	w.u16(0)
	w.u16(ar)
}

// opt appends a minimal OPT record (RFC 6891) when the query had one,
// copying the DO bit (RFC 3225).
func (w *respWriter) opt(q *query) {
	if !q.hasOPT {
		return
	}
	var ttl uint32
	if q.do {
		ttl = optDO
	}
	w.put(0) // root name
	w.u16(mdns.TypeOPT)
	w.u16(ednsUDPSize)
	w.u32(ttl)
	w.u16(0)
}

// presentationName appends name (lower-case presentation form) in wire form.
func (w *respWriter) presentationName(name string) {
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if i > start {
				w.put(byte(i - start))
				w.str(name[start:i])
			}
			start = i + 1
		}
	}
	w.put(0)
}

// reverseAddr parses an in-addr.arpa or ip6.arpa name (lower case, no
// trailing dot) into the address it stands for.
func reverseAddr(name []byte) (netip.Addr, bool) {
	const v4Suffix, v6Suffix = ".in-addr.arpa", ".ip6.arpa"
	switch {
	case hasSuffix(name, v4Suffix):
		labels := name[:len(name)-len(v4Suffix)]
		var b [4]byte
		i := 3
		v, digits := 0, 0
		for k := 0; k <= len(labels); k++ {
			if k == len(labels) || labels[k] == '.' {
				if digits == 0 || i < 0 || v > 255 {
					return netip.Addr{}, false
				}
				b[i] = byte(v)
				i--
				v, digits = 0, 0
				continue
			}
			c := labels[k]
			if c < '0' || c > '9' || digits == 3 {
				return netip.Addr{}, false
			}
			v = v*10 + int(c-'0')
			digits++
		}
		if i != -1 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4(b), true
	case hasSuffix(name, v6Suffix):
		labels := name[:len(name)-len(v6Suffix)]
		if len(labels) != 63 { // 32 nibbles and 31 dots
			return netip.Addr{}, false
		}
		var b [16]byte
		for k := 0; k < 32; k++ {
			c := labels[2*k]
			if k < 31 && labels[2*k+1] != '.' {
				return netip.Addr{}, false
			}
			var nib byte
			switch {
			case '0' <= c && c <= '9':
				nib = c - '0'
			case 'a' <= c && c <= 'f':
				nib = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			// The first label is the lowest nibble.
			pos := 31 - k
			if pos%2 == 0 {
				b[pos/2] |= nib << 4
			} else {
				b[pos/2] |= nib
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

func hasSuffix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[len(b)-len(s):]) == s
}

// ReadTCPFrame splits the first length-prefixed DNS message off a TCP byte
// stream. It returns ok=false when buf does not yet hold a whole frame.
func ReadTCPFrame(buf []byte) (msg, rest []byte, ok bool) {
	if len(buf) < 2 {
		return nil, buf, false
	}
	n := int(binary.BigEndian.Uint16(buf))
	if len(buf) < 2+n {
		return nil, buf, false
	}
	return buf[2 : 2+n], buf[2+n:], true
}

// SplitTCPFrame is ReadTCPFrame but returns the frame with its length
// prefix, ready for HandleQuery(TransportTCP, frame, out).
func SplitTCPFrame(buf []byte) (frame, rest []byte, ok bool) {
	msg, rest, ok := ReadTCPFrame(buf)
	if !ok {
		return nil, buf, false
	}
	return buf[:2+len(msg)], rest, true
}

// AppendTCPFrame appends msg with its 2-byte length prefix. Messages longer
// than 65535 bytes cannot be framed and yield ErrMalformed.
func AppendTCPFrame(dst, msg []byte) ([]byte, error) {
	if len(msg) > 0xffff {
		return dst, ErrMalformed
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
	return append(dst, msg...), nil
}
