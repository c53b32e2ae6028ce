package snownet

import (
	"io"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// PathKind says how WireGuard packets for a peer leave the node.
type PathKind uint8

const (
	// PathNone: no path yet (ICE still checking) or no longer.
	PathNone PathKind = iota
	// PathDirect: straight to the remote address of the nominated pair,
	// through the shared socket (the remote may itself be a relay
	// candidate; the local side is not).
	PathDirect
	// PathRelayed: through our own TURN allocation (local relay candidate).
	PathRelayed
)

func (k PathKind) String() string {
	switch k {
	case PathDirect:
		return "direct"
	case PathRelayed:
		return "relayed"
	default:
		return "none"
	}
}

// path is an immutable description of where a peer's packets go. It is
// swapped atomically so the send path reads it without locks.
type path struct {
	kind   PathKind
	direct *conn.StdNetEndpoint // PathDirect: cached so Send never allocates
	relay  io.Writer            // PathRelayed: the ICE agent's conn
	// PathRelayed with Config.SharedTURN: our shared allocation and the
	// channel bound to the peer; direct is then the relay's address.
	turn    *turnProxy
	channel uint16
}

// peerEndpoint is the conn.Endpoint wireguard-go holds for one peer. It
// names the peer, not an address: the Bind resolves it to the peer's
// current path on every Send, so an ICE path change never touches the
// WireGuard configuration.
type peerEndpoint struct {
	id    string
	bytes []byte // DstToBytes: stable per peer, feeds mac2 cookies

	path atomic.Pointer[path]

	// pendingMu guards pending: the last handshake message WireGuard
	// tried to send while the peer had no path. wireguard-go rate-limits
	// initiations to one per 5 s even when the send fails, so it is kept
	// and flushed as soon as a path appears instead of losing 5 s.
	pendingMu sync.Mutex
	pending   []byte

	txBytes atomic.Uint64
	noPath  atomic.Uint64 // packets dropped for lack of a path
}

var _ conn.Endpoint = (*peerEndpoint)(nil)

func newPeerEndpoint(id string) *peerEndpoint {
	e := &peerEndpoint{id: id, bytes: []byte("peer:" + id)}
	e.path.Store(&path{kind: PathNone})
	return e
}

func (e *peerEndpoint) ClearSrc()           {}
func (e *peerEndpoint) SrcToString() string { return "" }
func (e *peerEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }
func (e *peerEndpoint) DstToBytes() []byte  { return e.bytes }

// DstToString returns the direct address when there is one, so that
// IpcGet prints something an address parser accepts; otherwise the
// unspecified address.
func (e *peerEndpoint) DstToString() string {
	if p := e.path.Load(); p.kind == PathDirect {
		return p.direct.AddrPort.String()
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), 0).String()
}

func (e *peerEndpoint) DstIP() netip.Addr {
	if p := e.path.Load(); p.kind == PathDirect {
		return p.direct.AddrPort.Addr()
	}
	return netip.Addr{}
}

// takePending returns and clears the stored handshake initiation.
func (e *peerEndpoint) takePending() []byte {
	e.pendingMu.Lock()
	defer e.pendingMu.Unlock()
	p := e.pending
	e.pending = nil
	return p
}

func (e *peerEndpoint) keepPending(b []byte) {
	e.pendingMu.Lock()
	e.pending = append(e.pending[:0], b...)
	e.pendingMu.Unlock()
}
