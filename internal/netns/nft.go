package netns

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// NATMode selects how Masquerade maps source ports.
type NATMode int

const (
	// EndpointIndependent is plain masquerade: Linux keeps the source port
	// when it is free, so one inside socket gets the same outside address and
	// port for every destination (a "full cone"-like mapping, what
	// hole punching needs).
	EndpointIndependent NATMode = iota
	// Symmetric is `masquerade random,fully-random`: every new conntrack
	// entry (i.e. every destination) gets a random outside port, so
	// STUN-discovered mappings do not work for other peers and ICE must fall
	// back to a relay.
	Symmetric
)

// tableName is the one nftables table this package owns in a namespace.
const tableName = "gozone_netns"

// nft applies fn's additions to this namespace's table, creating the table
// on first use. Rules live and die with the namespace.
func (n *NS) nft(fn func(c *nftables.Conn, t *nftables.Table)) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(n.handle)))
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", n.name, err)
	}
	defer c.CloseLasting()
	t := c.AddTable(&nftables.Table{Name: tableName, Family: nftables.TableFamilyINet})
	fn(c, t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables in %s: %w", n.name, err)
	}
	return nil
}

// ifname is the nftables representation of an interface name for an exact
// match against meta iifname/oifname: the name and its NUL terminator.
func ifname(name string) []byte { return append([]byte(name), 0) }

// Masquerade source-NATs everything leaving through link oif to oif's
// address (nftables `oifname X masquerade`), the way a home router or a
// cloud NAT gateway does. Call EnableForwarding too for a router.
func (n *NS) Masquerade(oif string, mode NATMode) error {
	masq := &expr.Masq{}
	if mode == Symmetric {
		masq.Random = true
		masq.FullyRandom = true
	}
	return n.nft(func(c *nftables.Conn, t *nftables.Table) {
		ch := c.AddChain(&nftables.Chain{
			Name: "nat_post", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
		})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(oif)},
			masq,
		}})
	})
}

// RandomDrop drops about percent % of the packets entering and leaving
// through link (nftables `iifname X numgen random mod 100 < N drop`, and
// the same for oifname), a lossy-link simulation. percent 0 drops nothing
// and 100 drops everything.
func (n *NS) RandomDrop(link string, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("random drop: percent %d out of 0..100", percent)
	}
	threshold := make([]byte, 4)
	binary.BigEndian.PutUint32(threshold, uint32(percent))
	rule := func(key expr.MetaKey) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(link)},
			&expr.Numgen{Register: 1, Modulus: 100, Type: unix.NFT_NG_RANDOM},
			// numgen yields a host-order u32 while cmp compares bytes
			// (memcmp), so convert to network order first, as nft does.
			&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
			&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: threshold},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}
	}
	return n.nft(func(c *nftables.Conn, t *nftables.Table) {
		in := c.AddChain(&nftables.Chain{
			Name: "drop_in", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw,
		})
		c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: rule(expr.MetaKeyIIFNAME)})
		out := c.AddChain(&nftables.Chain{
			Name: "drop_out", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityConntrackHelper,
		})
		c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: rule(expr.MetaKeyOIFNAME)})
	})
}

func (m NATMode) String() string {
	switch m {
	case EndpointIndependent:
		return "endpoint-independent"
	case Symmetric:
		return "symmetric"
	}
	return fmt.Sprintf("NATMode(%d)", int(m))
}
