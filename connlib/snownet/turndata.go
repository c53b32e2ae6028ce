package snownet

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// This file is the relayed data path with TURN on the shared socket
// (the default; see Config.PionTURN): WireGuard packets for a peer reached through our
// allocation are framed as ChannelData by the Bind itself and leave in the
// same sendmmsg/GSO batch as direct traffic; ChannelData from the relay
// carrying WireGuard is unwrapped in place in the receive batch. pion sees
// only the STUN inside ChannelData (its checks and keepalives on the
// relayed pair). Nothing here allocates per packet or crosses goroutines.

// turnDataRoutes maps our channel numbers on one allocation to the peer
// endpoint whose WireGuard traffic uses them. Copy on write.
type turnDataRoutes map[uint16]*peerEndpoint

// turnData is the per-proxy state of the Bind's data path.
type turnData struct {
	mu     sync.Mutex // serialises writers of routes
	routes atomic.Pointer[turnDataRoutes]
}

func (d *turnData) route(ch uint16) *peerEndpoint {
	m := d.routes.Load()
	if m == nil {
		return nil
	}
	return (*m)[ch]
}

// set points ch at e (nil removes ch); any other channel of e is dropped.
func (d *turnData) set(ch uint16, e *peerEndpoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := make(turnDataRoutes)
	if old := d.routes.Load(); old != nil {
		for k, v := range *old {
			if v != e && k != ch {
				next[k] = v
			}
		}
	}
	if e != nil {
		next[ch] = e
	}
	d.routes.Store(&next)
}

// forget removes every channel routed to e.
func (d *turnData) forget(e *peerEndpoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.routes.Load()
	if old == nil {
		return
	}
	next := make(turnDataRoutes, len(*old))
	for k, v := range *old {
		if v != e {
			next[k] = v
		}
	}
	d.routes.Store(&next)
}

// SetTURNPath points peer id at our shared allocation on tp: its WireGuard
// packets are sent as ChannelData on channel (bound to the peer's address)
// and ChannelData arriving on that channel is handed to WireGuard as the
// peer's. A held handshake is flushed on the new path.
func (b *Bind) setTURNPath(id string, tp *turnProxy, channel uint16) {
	e := b.peer(id)
	srv := tp.server()
	p := &path{
		kind:    PathRelayed,
		turn:    tp,
		channel: channel,
		direct:  &conn.StdNetEndpoint{AddrPort: srv},
	}
	if old := e.path.Load(); old.turn != nil && old.turn != tp {
		old.turn.data.forget(e)
	}
	tp.data.set(channel, e)
	e.path.Store(p)
	if init := e.takePending(); init != nil {
		_ = b.sendPath(e, p, [][]byte{init})
	}
}

// framesPool holds the per-call slice of frames and the copies made for
// buffers without tail room (handshakes live in exact-size arrays).
type turnFrames struct {
	frames [][]byte
	copies []*[]byte // pooled buffers in use until the send returns
}

var turnFramesPool = sync.Pool{New: func() any { return new(turnFrames) }}

// sendTURN frames bufs as ChannelData on p's channel and sends them in one
// batch to the relay. Buffers with 4 bytes of spare capacity (wireguard-go's
// data packets: a slice at the start of a 64 KiB element) are shifted in
// place; others are copied into pooled buffers.
func (b *Bind) sendTURN(p *path, bufs [][]byte) error {
	tf := turnFramesPool.Get().(*turnFrames)
	tf.frames = tf.frames[:0]
	for _, buf := range bufs {
		n := len(buf)
		var f []byte
		if cap(buf)-n >= channelDataHeaderSize {
			f = buf[:n+channelDataHeaderSize]
			copy(f[channelDataHeaderSize:], buf[:n])
		} else {
			bp := framePool.Get().(*[]byte)
			if cap(*bp) < n+channelDataHeaderSize {
				*bp = make([]byte, 0, n+channelDataHeaderSize)
			}
			f = (*bp)[:n+channelDataHeaderSize]
			copy(f[channelDataHeaderSize:], buf)
			tf.copies = append(tf.copies, bp)
		}
		binary.BigEndian.PutUint16(f[0:2], p.channel)
		binary.BigEndian.PutUint16(f[2:4], uint16(n))
		tf.frames = append(tf.frames, f)
	}
	p.turn.tx.Add(1)
	err := b.inner.Send(tf.frames, p.direct)
	if err == nil {
		b.nRelayedOut.Add(uint64(len(bufs)))
	}
	clear(tf.frames)
	tf.frames = tf.frames[:0]
	for _, bp := range tf.copies {
		framePool.Put(bp)
	}
	clear(tf.copies)
	tf.copies = tf.copies[:0]
	turnFramesPool.Put(tf)
	return err
}

// unwrapTURN handles ChannelData from relay tp at bufs[i]: WireGuard on a
// routed channel is shifted to the front of the buffer and handed to the
// device as the peer's (true); anything else (STUN for ICE, unrouted
// channels) goes to the proxy and the slot is emptied (false).
func (b *Bind) unwrapTURN(tp *turnProxy, bufs [][]byte, sizes []int, eps []conn.Endpoint, i int) bool {
	p := bufs[i][:sizes[i]]
	ch, payload, err := ParseChannelData(p)
	if err == nil && isWireGuard(payload) {
		if e := tp.data.route(ch); e != nil {
			sizes[i] = copy(bufs[i], payload)
			eps[i] = e
			return true
		}
	}
	if !tp.handleChannelData(p) {
		b.nChannelData.Add(1)
	}
	sizes[i] = 0
	return false
}

// turnProxyForRelayed returns the proxy whose allocation has relayed
// address ra.
func (b *Bind) turnProxyForRelayed(ra netip.AddrPort) *turnProxy {
	m := b.turn.Load()
	if m == nil {
		return nil
	}
	for _, tp := range *m {
		if tp.alloc.relayedAddr() == ra {
			return tp
		}
	}
	return nil
}
