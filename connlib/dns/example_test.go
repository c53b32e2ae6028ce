package dns_test

import (
	"fmt"
	"net/netip"

	"github.com/gozone/gozone/connlib/dns"
	"github.com/gozone/gozone/connlib/dns/p2pcontrol"
	mdns "github.com/miekg/dns"
)

// The client session's use of the stub: intercept a query sent to a
// sentinel, answer it locally, and tell the resource's gateway which proxy
// IPs the name got (retrying until the gateway answers).
func Example() {
	const rid = "3c9a8a0e-1f3c-4a6e-9a55-0d1f0b7c2e11"
	r, err := dns.NewResolver(dns.Config{SearchDomain: "corp.example.com"})
	if err != nil {
		panic(err)
	}
	if err := r.SetResources([]dns.Resource{{ID: rid, Address: "*.corp.example.com", IPStack: dns.IPStackDual}}); err != nil {
		panic(err)
	}
	sentinels, _ := dns.NewSentinelMap(dns.EffectiveUpstreams(nil, nil, []netip.Addr{netip.MustParseAddr("192.0.2.53")}))
	fmt.Println("OS resolver:", sentinels.Sentinels()[0])

	// An application asks the sentinel for gitlab (expanded with the search domain).
	m := new(mdns.Msg)
	m.SetQuestion("gitlab.", mdns.TypeA)
	query, _ := m.Pack()
	out := make([]byte, dns.MaxResponseSize)
	res, _ := r.HandleQuery(dns.TransportUDP, query, out)
	reply := new(mdns.Msg)
	_ = reply.Unpack(res.Response)
	fmt.Println(res.Action, reply.Answer[0].(*mdns.A).A, "ttl", reply.Answer[0].Header().Ttl)

	// The name is new: send assigned_ips to the gateway, every 2 s until domain_status.
	retry := p2pcontrol.NewRetrier[string](p2pcontrol.RetryConfig{})
	for a, ok := r.PollAssignment(); ok; a, ok = r.PollAssignment() {
		retry.Schedule(a.Name)
		pkt, _ := p2pcontrol.AppendAssignedIPs(nil, p2pcontrol.AssignedIPs{Resource: a.ResourceID, Domain: a.Name, ProxyIPs: a.AppendIPs(nil)})
		msg, _ := p2pcontrol.Decode(pkt)
		fmt.Println(msg.Event, msg.AssignedIPs.Domain, len(msg.AssignedIPs.ProxyIPs), "proxy IPs")
	}

	// A packet to a proxy IP: which name and resource is it for?
	tgt, _ := r.LookupProxyIP(netip.MustParseAddr("100.96.0.3"))
	fmt.Println(tgt.Name, tgt.ResourceID == rid)
	// Output:
	// OS resolver: 100.100.111.1
	// respond 100.96.0.1 ttl 1
	// assigned_ips gitlab.corp.example.com 8 proxy IPs
	// gitlab.corp.example.com true
}
