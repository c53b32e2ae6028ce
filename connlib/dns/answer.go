package dns

import (
	"encoding/binary"
	"errors"

	mdns "github.com/miekg/dns"
)

// ErrorReply writes a reply with rcode (e.g. mdns.RcodeServerFailure when no
// upstream or gateway can be reached) for a query, echoing its ID and
// question. query is framed as t says; the reply is framed the same way and
// is a prefix of out.
func ErrorReply(t Transport, query, out []byte, rcode int) ([]byte, error) {
	w := respWriter{buf: out, ok: true}
	if t == TransportTCP {
		if len(query) < 2 || int(binary.BigEndian.Uint16(query)) != len(query)-2 {
			return nil, ErrShortMessage
		}
		query = query[2:]
		w.put(0, 0)
	}
	var scratch [maxWireName]byte
	q, err := parseQuery(query, &scratch)
	switch {
	case errors.Is(err, ErrShortMessage) || errors.Is(err, ErrNotQuery):
		return nil, err
	case err != nil:
		w.header(&q, rcode, 0, 0, 0)
	default:
		w.header(&q, rcode, 1, 0, optCount(&q))
		w.bytes(query[headerLen:q.qEnd])
		w.opt(&q)
	}
	if !w.ok {
		return nil, ErrShortBuffer
	}
	if t == TransportTCP {
		binary.BigEndian.PutUint16(w.buf, uint16(w.n-2))
	}
	return w.buf[:w.n], nil
}

func (r *Resolver) finish(t Transport, w *respWriter, res Result) (Result, error) {
	if !w.ok {
		return Result{Query: res.Query}, ErrShortBuffer
	}
	if t == TransportTCP {
		binary.BigEndian.PutUint16(w.buf, uint16(w.n-2))
	}
	res.Action = ActionRespond
	res.Response = w.buf[:w.n]
	return res, nil
}

func optCount(q *query) uint16 {
	if q.hasOPT {
		return 1
	}
	return 0
}

// answerEmpty writes header + echoed question (+ OPT) with rcode.
func (r *Resolver) answerEmpty(w *respWriter, q *query, msg []byte, rcode int) {
	w.header(q, rcode, 1, 0, optCount(q))
	w.bytes(msg[headerLen:q.qEnd])
	w.opt(q)
}

// answerAddrs writes the A or AAAA records for e that its stack allows. The
// owner name is a pointer to the question, so the answer carries exactly the
// name (and case) the application asked for, also when it was expanded with
// the search domain.
func (r *Resolver) answerAddrs(w *respWriter, q *query, msg []byte, e *nameEntry) {
	var an uint16
	if q.qtype == mdns.TypeA && e.stack.IPv4() || q.qtype == mdns.TypeAAAA && e.stack.IPv6() {
		an = ProxyIPsPerFamily
	}
	w.header(q, mdns.RcodeSuccess, 1, an, optCount(q))
	w.bytes(msg[headerLen:q.qEnd])
	for i := 0; i < int(an); i++ {
		w.u16(0xc000 | headerLen) // pointer to the question name
		w.u16(q.qtype)
		w.u16(mdns.ClassINET)
		w.u32(TTL)
		if q.qtype == mdns.TypeA {
			a := e.ips.V4[i].As4()
			w.u16(4)
			w.bytes(a[:])
		} else {
			a := e.ips.V6[i].As16()
			w.u16(16)
			w.bytes(a[:])
		}
	}
	w.opt(q)
}

func (r *Resolver) answerPTR(w *respWriter, q *query, msg []byte, name string) {
	w.header(q, mdns.RcodeSuccess, 1, 1, optCount(q))
	w.bytes(msg[headerLen:q.qEnd])
	w.u16(0xc000 | headerLen)
	w.u16(mdns.TypePTR)
	w.u16(mdns.ClassINET)
	w.u32(TTL)
	w.u16(uint16(len(name) + 2))
	w.presentationName(name)
	w.opt(q)
}
