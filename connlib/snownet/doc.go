// Package snownet runs WireGuard directly over ICE-selected UDP paths, with
// TURN relays as the fallback, on one UDP socket per address family.
//
// It is gozone's counterpart of Firezone's snownet. WireGuard is
// wireguard-go's device; ICE is pion/ice v3; the two share the sockets of a
// wrapped conn.StdNetBind (recvmmsg/sendmmsg, UDP GSO/GRO, large buffers):
//
//	          +----------------------- Node -----------------------+
//	tun.Device|  wireguard-go device  <->  Bind (conn.Bind)         |
//	          |                             |  classify each datagram|
//	          |      WireGuard <------------+  STUN -> STUNConn -> ICE mux -> agents
//	          |      WireGuard <-- ChannelData from a relay, unwrapped in place
//	          |                    (STUN inside it -> turnProxy -> agent's TURN client)
//	          +-----------------------------------------------------+
//
// # Data path
//
// On Linux the Bind keeps StdNetBind's sockets, Send and socket options but
// reads through a dup of each of its sockets (data_linux.go): up to 32
// datagrams per recvmmsg into its own 64 KiB buffers, GRO super-datagrams
// split across calls, source endpoints cached, no allocation per packet.
// StdNetBind read only 2 datagrams per recvmmsg with GRO on and allocated
// per datagram, i.e. per packet on the relayed path (relays forward packet
// by packet). BindConfig.StdReceive (or SNOWNET_STD_RECEIVE=1) keeps
// StdNetBind's receive for comparisons.
//
// Each received datagram is classified (Classify): WireGuard first (type
// 1..4, three zero bytes, at least 32 bytes), then STUN, then TURN
// ChannelData. WireGuard goes to the device; STUN goes to pion's
// UniversalUDPMux through STUNConn and its slot is zeroed (answers to the
// shared TURN allocations' own requests excepted); ChannelData from a known
// relay is unwrapped (see below); anything else is dropped and counted
// (BindStats). The mux's writes leave through the same socket. pion's mux
// routes by local ufrag alone and the portal's ufrags are only 4
// characters, so the Node keeps a small pool of
// muxes on the socket: an agent whose ufrag is taken goes to another one,
// and the Bind routes STUN requests by USERNAME and responses to every mux
// (see muxpool.go). With the wildcard socket the muxes list no loopback or
// link-local addresses (setup_muxnet.go): those are never signalled, and
// pion made a duplicate srflx candidate per listed address, which could
// leave the controlled side without a selected pair.
//
// Endpoints are keyed by peer id: the Node configures each WireGuard peer
// with endpoint=<peer id>, and the Bind keeps an atomic path per peer
// (direct address, relayed through the ICE agent's conn, or none). A
// change of the nominated pair swaps that pointer; WireGuard is never
// reconfigured, and its roaming is disabled so it never overrides ICE. A
// handshake message sent while a peer has no path is held and flushed when
// the path appears (wireguard-go would otherwise wait 5 s to retry).
//
// TURN runs on the shared socket (Firezone's way): one allocation per
// relay address, IPv4 or IPv6 (an IPv6 relay is asked for an IPv6 relayed
// address), and one channel per peer. turnalloc.go: long-term credentials,
// a 438 (stale nonce) retried with the new nonce, refresh at lifetime/2, a
// check after 25 s of silence, re-allocation with the same channel numbers
// when the relay lost the allocation (REFRESH answered 437 or not at all);
// an ALLOCATE answered 437 (our own allocation from before a restart on
// the same port) deletes it (REFRESH, LIFETIME 0) and retries once. A
// watchdog (turn_watch.go) checks the allocation at once when we keep
// sending through a relay that sent nothing back for 3 s (a live relayed
// pair hears ICE keepalive answers every 2 s); when the relay is alive it
// waits 15 s before checking again. When an allocation is re-created on a
// new relayed address, the connections whose nominated pair sent from the
// old one fail at once, reason "relay allocation lost" (relayloss.go),
// instead of after ICE's ~8.5 s; one the caller upserted again unchanged
// within the last 15 s is restarted with a new agent instead. The peer's
// next connection within 30 s accepts a relayed pair after 250 ms rather
// than pion's 2 s.
//
// pion cannot take a relay candidate it did not gather, so each agent's TURN
// client gets a virtual conn from AgentConfig.Net (turnvconn.go) and an
// in-process proxy (turnproxy.go) answers it: its ALLOCATE gets the shared
// relayed address, its permissions and channel binds become real channel
// binds. Once a pair on our relay candidate is nominated the Bind frames
// the peer's WireGuard packets as ChannelData itself, in place (wireguard-go
// leaves tail room; the 4-byte header is made by shifting the packet) and
// sends them in the same sendmmsg/GSO batch as direct traffic; WireGuard in
// ChannelData from the relay is unwrapped in place in the receive batch.
// pion only sees the STUN inside ChannelData.
//
// With Config.PionTURN the old path is used instead: pion's own TURN
// allocation per agent on its own socket, packets written to the agent's
// conn, and one goroutine per relayed peer reading it into a ring of
// preallocated slots that a single batched ReceiveFunc drains.
//
// # Connections
//
// A Node holds one connection per peer id, each with its own pion agent
// (host and srflx candidates on the shared socket, relay candidates from
// the relays given to UpdateRelays, which also serve as STUN servers; a
// relay whose 401 names another realm than the one given is refused).
// Credentials, PSK and role come from the caller (the portal): the client
// is controlling, the gateway controlled. Candidates are exchanged as SDP
// "candidate:" strings (ParseCandidates normalises pion's form and skips
// bad or non-UDP ones individually).
//
// ICE checks every 50 ms while connecting and keeps checking each pair
// for 15 s (ICETimers; pion's 7 checks at 200 ms gave up on pairs behind
// NATs before the slower side had sent its own checks).
//
// Lifecycle (Firezone's timers, evaluated on an injected Clock):
// no remote candidate within CandidateTimeout (10 s) -> failed; ICE
// Disconnected for DisconnectGrace (2 s) or ICE Failed -> failed; no
// traffic for IdleTimeout (20 s) -> idle (reported in Stats); established
// once the WireGuard handshake is done and a pair is nominated (the
// controlling side starts the handshake on nomination; wireguard-go has no
// handshake callback, so its counters are polled every 2 ms after
// nomination, backing off with age to TickInterval). An upsert with
// identical parameters reuses the connection; any other change replaces
// it. Reset closes every connection, rotates the WireGuard key and rebinds
// the sockets on a new port, so the caller can reconnect to the portal with
// the new key.
//
// # Driving a Node
//
//	n, _ := snownet.NewNode(snownet.Config{Tun: dev, Logger: log})
//	n.UpdateRelays(relays, nil)
//	n.UpsertConnection(snownet.ConnParams{Peer: gid, PublicKey: pk, ...})
//	for ev := range n.Events() {
//		switch ev.Kind {
//		case snownet.EventNewCandidate: // send ev.Candidate to the portal
//		case snownet.EventConnectionFailed: // forget the peer
//		}
//	}
//	n.AddRemoteCandidate(gid, sdp) // for each candidate from the portal
//
// Every Node method is safe for concurrent use and may be called from the
// goroutine that reads Events. Events are queued without bound and
// delivered in order; keep draining the channel until it is closed by
// Close. Node.Close also closes the tun.Device (wireguard-go owns it).
//
// # Limits of pion/ice v3 (frozen at v3.0.16)
//
//   - Each agent runs its own TURN client; a relay allows one allocation
//     per 5-tuple, so on the shared socket these clients are answered by
//     the in-process proxy (see above). A relay candidate whose allocation
//     the relay lost (restart) stays stale in its agent until the
//     connection is replaced (at once if its nominated pair used it, see
//     above); new agents get the re-created allocation.
//   - Only IPv4 relays give relay candidates: pion gathers TURN over udp4
//     only, so ice.go gives it TURN URLs for IPv4 relays alone (IPv6
//     relays still serve as STUN servers). Our side (allocation, proxy,
//     data path) handles IPv6 relays.
//   - Remote candidates cannot be removed from a running agent, and TURN
//     servers cannot be added to one: RemoveRemoteCandidate only validates,
//     UpdateRelays affects new connections (and invalidates local relay
//     candidates on removed relays).
//   - ICE timers cannot change on a running agent, so Idle is reported but
//     does not switch to Firezone's slower idle ICE configuration.
//   - Closing an agent waits for its candidate gathering, which a TURN
//     allocation in flight does not interrupt (up to ~8 s with a silent
//     relay); snownet closes agents in the background, and Close waits.
package snownet
