package snownet

import (
	"errors"
	"net/netip"
)

// ErrBadRelay is returned by UpdateRelays for a relay without id, address
// or credentials.
var ErrBadRelay = errors.New("snownet: relay needs id, address, username and password")

// Relay is one TURN server address the portal gave us. The portal lists a
// relay's IPv4 and IPv6 addresses as separate entries with the same ID.
// Username and Password are TURN long-term credentials (reference §5:
// username "expiry:salt", password derived from the relay secret); they are
// used as given and never logged.
type Relay struct {
	ID       string
	Addr     netip.AddrPort
	Username string
	Password string
	Realm    string // expected realm; a 401 naming another one is refused ("" accepts any)
}

func (r Relay) key() string { return r.ID + "|" + r.Addr.String() }

func (r Relay) valid() bool {
	return r.ID != "" && r.Addr.IsValid() && r.Addr.Port() != 0 && r.Username != "" && r.Password != ""
}
