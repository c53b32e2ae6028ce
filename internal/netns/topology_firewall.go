package netns

import (
	"encoding/binary"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// DropInboundNew drops TCP and UDP packets that arrive on link iif for the
// namespace itself (the input hook) and would open a new connection:
// a router's "default deny inbound". Forwarded traffic and replies are not
// affected.
//
// It matters for hole punching through Linux masquerade: without it, a
// peer's probe that reaches the router before the inside host has sent
// anything is delivered locally, and the conntrack entry it leaves behind
// makes the router pick a different outside port for the host's own
// packet to that peer a moment later (the port looks taken), which breaks
// the endpoint-independent mapping. A packet dropped before conntrack
// confirms it leaves no entry.
func (n *NS) DropInboundNew(iif string) error {
	newBit := make([]byte, 4)
	binary.NativeEndian.PutUint32(newBit, expr.CtStateBitNEW)
	rule := func(proto byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(iif)},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: newBit, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}
	}
	return n.nft(func(c *nftables.Conn, t *nftables.Table) {
		ch := c.AddChain(&nftables.Chain{
			Name: "input_filter", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter,
		})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: rule(unix.IPPROTO_UDP)})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: rule(unix.IPPROTO_TCP)})
	})
}
