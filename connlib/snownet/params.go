package snownet

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Role is the ICE role of a connection: the client is controlling, the
// gateway controlled.
type Role uint8

const (
	RoleControlled Role = iota
	RoleControlling
)

// Credentials are ICE credentials as the portal hands them out.
type Credentials struct {
	Ufrag string
	Pwd   string
}

// ConnParams describe a connection to one peer.
type ConnParams struct {
	Peer         string // the portal's client or gateway id
	PublicKey    Key    // the peer's WireGuard key
	PresharedKey Key
	Local        Credentials
	Remote       Credentials
	Role         Role
	AllowedIPs   []netip.Prefix
}

// sameSession reports whether q describes the same connection as p (all
// but AllowedIPs equal): then it is reused, not replaced.
func (p ConnParams) sameSession(q ConnParams) bool {
	return p.Peer == q.Peer && p.PublicKey == q.PublicKey && p.PresharedKey == q.PresharedKey &&
		p.Local == q.Local && p.Remote == q.Remote && p.Role == q.Role
}

func (p ConnParams) validate() error {
	switch {
	case p.Peer == "" || strings.ContainsAny(p.Peer, "\n\r"):
		return fmt.Errorf("%w: peer id", ErrBadParams)
	case p.PublicKey.IsZero():
		return fmt.Errorf("%w: public key", ErrBadParams)
	case len(p.Local.Ufrag) < 4 || len(p.Local.Pwd) < 16 || len(p.Remote.Ufrag) < 4 || len(p.Remote.Pwd) < 16:
		return fmt.Errorf("%w: ICE credentials too short", ErrBadParams)
	}
	return nil
}

// ConnStats is a snapshot of one connection.
type ConnStats struct {
	Peer          string
	State         ConnState
	Path          PathKind  // relayed if either candidate of the pair is a relay
	Pair          *PairInfo // nil until a pair is nominated
	RxBytes       uint64
	TxBytes       uint64
	LastHandshake time.Time // zero before the first handshake
}
