package relay

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib/snownet"
	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// Two connlib snownet nodes that may only use relay candidates connect
// through this relay and exchange packets both ways: with TURN on the
// shared socket (snownet's default: allocation, channel binds,
// ChannelData framed in the Bind) and with pion's per-agent TURN clients.

type snowPeer struct {
	name  string
	ip    netip.Addr
	tun   *tuntest.ChannelTUN
	node  *snownet.Node
	creds snownet.Credentials
	other chan *snowPeer
	est   chan snownet.Event
}

func newSnowPeer(t *testing.T, name, ip string, pion bool, r snownet.Relay) *snowPeer {
	t.Helper()
	p := &snowPeer{name: name, ip: netip.MustParseAddr(ip), tun: tuntest.NewChannelTUN(),
		creds: snownet.Credentials{Ufrag: fmt.Sprintf("%-4.4s", name+"uf"), Pwd: fmt.Sprintf("%-22.22s", name+"passwordpassword123456")},
		other: make(chan *snowPeer, 1), est: make(chan snownet.Event, 4)}
	n, err := snownet.NewNode(snownet.Config{Tun: p.tun.TUN(), HostIP: netip.MustParseAddr("127.0.0.1"),
		DisableHostCandidates: true, DisableSrflxCandidates: true, PionTURN: pion})
	if err != nil {
		t.Fatal(err)
	}
	p.node = n
	t.Cleanup(func() { n.Close() })
	if err := n.UpdateRelays([]snownet.Relay{r}, nil); err != nil {
		t.Fatal(err)
	}
	go func() {
		var other *snowPeer
		var pending []string
		evs := n.Events()
		for {
			select {
			case ev, ok := <-evs:
				if !ok {
					return
				}
				switch ev.Kind {
				case snownet.EventNewCandidate:
					pending = append(pending, ev.Candidate)
				case snownet.EventConnectionEstablished:
					select {
					case p.est <- ev:
					default:
					}
				}
			case other = <-p.other:
			}
			if other != nil {
				for _, c := range pending {
					_ = other.node.AddRemoteCandidate(name, c)
				}
				pending = pending[:0]
			}
		}
	}()
	return p
}

func (p *snowPeer) params(remote *snowPeer, role snownet.Role) snownet.ConnParams {
	return snownet.ConnParams{Peer: remote.name, PublicKey: remote.node.PublicKey(), PresharedKey: snownet.Key{1, 2, 3},
		Local: p.creds, Remote: remote.creds, Role: role, AllowedIPs: []netip.Prefix{netip.PrefixFrom(remote.ip, 32)}}
}

func snowPing(t *testing.T, src, dst *snowPeer) {
	t.Helper()
	pkt := tuntest.Ping(dst.ip, src.ip)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case src.tun.Outbound <- pkt:
		case <-deadline:
			t.Fatalf("ping %s→%s: TUN did not take it", src.name, dst.name)
		}
		select {
		case got := <-dst.tun.Inbound:
			if bytes.Equal(got, pkt) {
				return
			}
		case <-time.After(500 * time.Millisecond): // the first ones may go before WireGuard's handshake
		case <-deadline:
			t.Fatalf("ping %s→%s: not received", src.name, dst.name)
		}
	}
}

func TestSnownetNodesConnectThroughRelay(t *testing.T) {
	for _, pion := range []bool{false, true} {
		t.Run(fmt.Sprintf("PionTURN=%v", pion), func(t *testing.T) {
			s := startRelayCfg(t, Config{})
			mk := func(name, ip, key string) *snowPeer {
				u, pw := s.Credentials(key, GatewayCredentialExpiry)
				return newSnowPeer(t, name, ip, pion, snownet.Relay{ID: "relay-1", Addr: s.Addr(), Username: u, Password: pw, Realm: Realm})
			}
			a := mk("alice", "10.0.0.1", "alice-key")
			b := mk("bob", "10.0.0.2", "bob-key")
			if err := b.node.UpsertConnection(b.params(a, snownet.RoleControlled)); err != nil {
				t.Fatal(err)
			}
			if err := a.node.UpsertConnection(a.params(b, snownet.RoleControlling)); err != nil {
				t.Fatal(err)
			}
			a.other <- b
			b.other <- a
			for _, p := range []*snowPeer{a, b} {
				select {
				case ev := <-p.est:
					if ev.Path != snownet.PathRelayed {
						t.Fatalf("%s: path %v, want relayed", p.name, ev.Path)
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("%s: not established through the relay; relay stats %+v", p.name, s.Stats())
				}
			}
			for i := 0; i < 5; i++ {
				snowPing(t, a, b)
				snowPing(t, b, a)
			}
			if st := s.Stats(); st.ToPeers == 0 || st.ToClients == 0 {
				t.Fatalf("the relay carried no ChannelData: %+v", st)
			}
			if s.AllocationCount() < 2 {
				t.Fatalf("allocations %d", s.AllocationCount())
			}
		})
	}
}
