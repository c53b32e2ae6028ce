package snownet_test

import (
	"fmt"
	"net/netip"

	"github.com/gozone/gozone/connlib/snownet"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// A gateway-side Node: the portal's relays, then one connection per
// authorized client, driven from the Events loop.
func ExampleNode() {
	node, err := snownet.NewNode(snownet.Config{
		Tun:    tuntest.NewChannelTUN().TUN(), // connlib passes its pipeline device
		Logger: zap.NewNop(),
		HostIP: netip.MustParseAddr("127.0.0.1"),
	})
	if err != nil {
		panic(err)
	}
	defer node.Close()

	clientKey, _ := snownet.GeneratePrivateKey()
	err = node.UpsertConnection(snownet.ConnParams{
		Peer:       "client-uuid",
		PublicKey:  clientKey.PublicKey(),
		Local:      snownet.Credentials{Ufrag: "gwuf", Pwd: "gateway-password-22chr"},
		Remote:     snownet.Credentials{Ufrag: "cluf", Pwd: "client-password-22char"},
		Role:       snownet.RoleControlled, // gateways are ICE-controlled
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.0.7/32")},
	})
	if err != nil {
		panic(err)
	}
	for ev := range node.Events() {
		switch ev.Kind {
		case snownet.EventNoRelays:
			fmt.Println("no relays: tell the portal")
		case snownet.EventNewCandidate:
			// send ev.Candidate to the client through the portal; the
			// client's candidates go to node.AddRemoteCandidate.
			fmt.Println("first candidate:", ev.Candidate[:10])
			return
		}
	}
	// Output:
	// no relays: tell the portal
	// first candidate: candidate:
}
