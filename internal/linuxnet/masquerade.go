package linuxnet

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Tunnel ranges the gateway forwards for (reference §1.4): client tunnel
// addresses come from these.
var (
	TunnelV4 = netip.MustParsePrefix("100.64.0.0/11")
	TunnelV6 = netip.MustParsePrefix("fd00:2021:1111::/107")
)

// Masquerade is the gateway's forwarding and masquerade setup in its own
// nftables table (inet family, named after the TUN), the nftables form of
// what firezone-gateway-init installs with iptables (reference §6.1):
//
//	forward:     iifname <tun> accept; oifname <tun> accept
//	postrouting: ip saddr 100.64.0.0/11 oifname != <tun> masquerade
//	             ip6 saddr fd00:2021:1111::/107 oifname != <tun> masquerade
//
// Firezone matches the outgoing interfaces "e+" and "w+"; gozone matches
// every interface but the TUN, which needs no naming convention. Owning a
// table makes removal exact: Remove deletes the table and nothing else.
type Masquerade struct {
	table string
}

// ErrMasquerade wraps nftables failures.
var ErrMasquerade = errors.New("linuxnet: masquerade")

// MasqueradeTableName is the nftables table name used for tun.
func MasqueradeTableName(tun string) string { return "gozone_gw_" + tun }

func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// InstallMasquerade installs the rules for tun (replacing a table of the
// same name left by a previous run) and enables forwarding sysctls.
func InstallMasquerade(tun string) (*Masquerade, error) {
	if err := EnableForwarding(); err != nil {
		return nil, err
	}
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMasquerade, err)
	}
	name := MasqueradeTableName(tun)
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	// Start from a clean table: add-then-delete is idempotent whether or
	// not one exists.
	c.AddTable(t)
	c.DelTable(t)
	t = c.AddTable(t)
	policy := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{
		Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy,
	})
	for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(tun)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
	post := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	for _, p := range []netip.Prefix{TunnelV4, TunnelV6} {
		nfproto, off := byte(unix.NFPROTO_IPV4), uint32(12)
		if p.Addr().Is6() {
			nfproto, off = unix.NFPROTO_IPV6, 8
		}
		l := uint32(p.Addr().BitLen() / 8)
		mask := make([]byte, l)
		for i := 0; i < p.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: l},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: l, Mask: mask, Xor: make([]byte, l)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifnameBytes(tun)},
			&expr.Masq{},
		}})
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("%w: installing rules: %v", ErrMasquerade, err)
	}
	return &Masquerade{table: name}, nil
}

// Remove deletes the table. Safe to call on nil, more than once, and when
// the table is already gone.
func (m *Masquerade) Remove() error {
	if m == nil || m.table == "" {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMasquerade, err)
	}
	c.DelTable(&nftables.Table{Name: m.table, Family: nftables.TableFamilyINet})
	m.table = ""
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: removing rules: %v", ErrMasquerade, err)
	}
	return nil
}

// MasqueradeInstalled reports whether the table for tun exists.
func MasqueradeInstalled(tun string) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, err
	}
	for _, t := range ts {
		if t.Name == MasqueradeTableName(tun) {
			return true, nil
		}
	}
	return false, nil
}
