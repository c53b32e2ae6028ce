package snownet

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v3"
	"github.com/pion/stun/v2"
	"github.com/pion/transport/v3"
	"go.uber.org/zap"
)

// This file is the only place that drives a pion/ice agent; the rest of
// snownet sees iceSession and plain values, so moving to ice/v4 stays a
// small diff.

// ICETimers tunes the ICE agents. Zero fields take the defaults: checks
// every 50 ms while connecting (DefaultCheckInterval; pion's 200 ms made
// every NAT traversal wait ~1.5 intervals after the hole was punched), each
// pair checked for up to CheckBudget, and pion's defaults for the rest: a
// keepalive Binding request every 2 s on the selected pair, Disconnected
// after 5 s without traffic, Failed after 25 s.
type ICETimers struct {
	CheckInterval       time.Duration
	KeepaliveInterval   time.Duration
	DisconnectedTimeout time.Duration
	FailedTimeout       time.Duration
	// CheckBudget is how long a candidate pair is checked without an
	// answer before pion marks it failed (default DefaultCheckBudget).
	CheckBudget time.Duration
}

const (
	// DefaultCheckInterval is the connectivity-check interval while a
	// connection is being set up (pion only uses it in state Checking;
	// once connected, KeepaliveInterval applies).
	DefaultCheckInterval = 50 * time.Millisecond
	// DefaultCheckBudget is how long each pair is checked. pion marks a
	// pair failed after MaxBindingRequests unanswered checks (default 7,
	// i.e. 1.6 s at 200 ms), and a controlling agent never checks a failed
	// pair again, even when the peer's checks then arrive on it. Behind
	// NATs the controlling side's checks are dropped until the controlled
	// side has learnt our candidates and sent checks of its own (which
	// opens its NAT), so a portal or gateway slower than 1.6 s left every
	// pair failed and the agent in Checking until pion's 30 s timeout (the
	// rare set-up failure in examples/bench). Firezone's client keeps
	// checking for 16.5 s (reference §2.3); 15 s stays below pion's
	// checking timeout (DisconnectedTimeout + FailedTimeout = 30 s).
	DefaultCheckBudget = 15 * time.Second
)

// maxBindingRequests is pion's per-pair check limit for budget at
// interval.
func maxBindingRequests(interval, budget time.Duration) uint16 {
	n := budget / interval
	switch {
	case n < 7:
		return 7 // pion's default
	case n > 0xffff:
		return 0xffff
	}
	return uint16(n)
}

// iceState is the subset of pion's connection states snownet acts on.
type iceState uint8

const (
	iceChecking iceState = iota
	iceConnected
	iceDisconnected
	iceFailed
	iceClosed
)

// PairInfo describes a selected (nominated) candidate pair.
type PairInfo struct {
	Local, Remote string         // the candidates, SDP "candidate:" form
	RemoteAddr    netip.AddrPort // where direct packets go
	LocalRelay    bool           // local candidate is our relay allocation
	RemoteRelay   bool           // remote candidate is the peer's relay
}

// iceListener receives an iceSession's callbacks, each on a pion goroutine.
type iceListener interface {
	iceCandidate(sdp string, relay bool, addr string)
	iceState(s iceState)
	icePair(p PairInfo)
	iceConnected(rw io.ReadWriter)
}

type iceSessionConfig struct {
	mux          ice.UniversalUDPMux
	net          transport.Net
	relays       []Relay
	localUfrag   string
	localPwd     string
	remoteUfrag  string
	remotePwd    string
	controlling  bool
	disableHost  bool
	disableSrflx bool
	timers       ICETimers
	// relayWait, if set, replaces pion's relay acceptance wait (see
	// relayloss.go); nil keeps it.
	relayWait *time.Duration
	log       *zap.Logger
}

// iceSession is one ICE agent (one per connection).
type iceSession struct {
	agent  *ice.Agent
	cfg    iceSessionConfig
	l      iceListener
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

func durPtr(d time.Duration) *time.Duration {
	if d <= 0 {
		return nil
	}
	return &d
}

func newICESession(cfg iceSessionConfig, l iceListener) (*iceSession, error) {
	types := []ice.CandidateType{ice.CandidateTypeRelay}
	if !cfg.disableHost {
		types = append(types, ice.CandidateTypeHost)
	}
	if !cfg.disableSrflx {
		types = append(types, ice.CandidateTypeServerReflexive)
	}
	var urls []*stun.URI
	for _, r := range cfg.relays {
		host := r.Addr.Addr().Unmap().String()
		port := int(r.Addr.Port())
		// The relays double as STUN servers for srflx candidates (as in
		// Firezone); their Binding responses come back on the shared socket.
		urls = append(urls, &stun.URI{Scheme: stun.SchemeTypeSTUN, Host: host, Port: port, Proto: stun.ProtoTypeUDP})
		if r.Addr.Addr().Unmap().Is4() {
			// pion/ice v3 gathers relay candidates over udp4 only.
			urls = append(urls, &stun.URI{
				Scheme: stun.SchemeTypeTURN, Host: host, Port: port, Proto: stun.ProtoTypeUDP,
				Username: r.Username, Password: r.Password,
			})
		}
	}
	zero := time.Duration(0)
	check, budget := cfg.timers.CheckInterval, cfg.timers.CheckBudget
	if check <= 0 {
		check = DefaultCheckInterval
	}
	if budget <= 0 {
		budget = DefaultCheckBudget
	}
	maxReq := maxBindingRequests(check, budget)
	acfg := &ice.AgentConfig{
		Urls:                urls,
		NetworkTypes:        []ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeUDP6},
		CandidateTypes:      types,
		UDPMux:              cfg.mux,
		UDPMuxSrflx:         cfg.mux,
		Net:                 cfg.net,
		LocalUfrag:          cfg.localUfrag,
		LocalPwd:            cfg.localPwd,
		MulticastDNSMode:    ice.MulticastDNSModeDisabled,
		CheckInterval:       &check,
		MaxBindingRequests:  &maxReq,
		KeepaliveInterval:   durPtr(cfg.timers.KeepaliveInterval),
		DisconnectedTimeout: durPtr(cfg.timers.DisconnectedTimeout),
		FailedTimeout:       durPtr(cfg.timers.FailedTimeout),
		// Accept a working host, server-reflexive or peer-reflexive pair
		// at once: pion's defaults (srflx 500 ms, prflx 1 s) made every
		// direct connection across NATs wait half a second before the
		// first packet (set-up measured 690 ms median in examples/bench).
		// Relayed pairs keep pion's wait so a direct pair found in the
		// meantime still wins.
		HostAcceptanceMinWait:  &zero,
		SrflxAcceptanceMinWait: &zero,
		PrflxAcceptanceMinWait: &zero,
		RelayAcceptanceMinWait: cfg.relayWait,
		LoggerFactory:          pionLoggerFactory{cfg.log},
	}
	if cfg.mux == nil {
		acfg.UDPMux, acfg.UDPMuxSrflx = nil, nil
	}
	a, err := ice.NewAgent(acfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &iceSession{agent: a, cfg: cfg, l: l, ctx: ctx, cancel: cancel}
	if err := s.wire(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *iceSession) wire() error {
	if err := s.agent.OnCandidate(func(c ice.Candidate) {
		if c == nil {
			return
		}
		if !c.NetworkType().IsUDP() {
			return
		}
		s.l.iceCandidate(marshalCandidate(c), c.Type() == ice.CandidateTypeRelay, c.Address())
	}); err != nil {
		return err
	}
	if err := s.agent.OnConnectionStateChange(func(st ice.ConnectionState) {
		switch st {
		case ice.ConnectionStateChecking:
			s.l.iceState(iceChecking)
		case ice.ConnectionStateConnected, ice.ConnectionStateCompleted:
			s.l.iceState(iceConnected)
		case ice.ConnectionStateDisconnected:
			s.l.iceState(iceDisconnected)
		case ice.ConnectionStateFailed:
			s.l.iceState(iceFailed)
		case ice.ConnectionStateClosed:
			s.l.iceState(iceClosed)
		}
	}); err != nil {
		return err
	}
	return s.agent.OnSelectedCandidatePairChange(func(local, remote ice.Candidate) {
		addr, _ := netip.ParseAddr(remote.Address())
		s.l.icePair(PairInfo{
			Local:       marshalCandidate(local),
			Remote:      marshalCandidate(remote),
			RemoteAddr:  netip.AddrPortFrom(addr.Unmap(), uint16(remote.Port())),
			LocalRelay:  local.Type() == ice.CandidateTypeRelay,
			RemoteRelay: remote.Type() == ice.CandidateTypeRelay,
		})
	})
}

// start gathers local candidates and runs connectivity checks in the
// background (controlling: Dial, controlled: Accept).
func (s *iceSession) start() error {
	if err := s.agent.GatherCandidates(); err != nil {
		return err
	}
	go func() {
		var (
			c   *ice.Conn
			err error
		)
		if s.cfg.controlling {
			c, err = s.agent.Dial(s.ctx, s.cfg.remoteUfrag, s.cfg.remotePwd)
		} else {
			c, err = s.agent.Accept(s.ctx, s.cfg.remoteUfrag, s.cfg.remotePwd)
		}
		if err != nil {
			return // cancelled or agent closed; state callbacks tell the rest
		}
		s.l.iceConnected(c)
	}()
	return nil
}

func (s *iceSession) addRemote(c ice.Candidate) error { return s.agent.AddRemoteCandidate(c) }

// localCandidates returns the gathered local candidates in SDP form.
func (s *iceSession) localCandidates() []string {
	cs, err := s.agent.GetLocalCandidates()
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, marshalCandidate(c))
	}
	return out
}

// close stops the agent without waiting for its callbacks (they may be
// blocked on the caller's lock). It may block for seconds: pion waits for
// candidate gathering, and a TURN allocation in flight is not cancelled.
func (s *iceSession) close() {
	s.once.Do(func() {
		s.cancel()
		_ = s.agent.Close()
	})
}

// relayNet wraps the agent's transport.Net so that the sockets pion opens
// for its own TURN allocations get large buffers too (NetBird #6021: the
// default 208 KiB rmem cut relayed throughput tenfold).
type relayNet struct {
	transport.Net
	rcv, snd int
	// realm, if set, gives the realm expected from a relay address;
	// responses naming another realm are dropped (see realmConn).
	realm      func(netip.AddrPort) string
	realmDrops *atomic.Uint64
}

func (n relayNet) ListenPacket(network, address string) (net.PacketConn, error) {
	pc, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	type bufSetter interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}
	if bs, ok := pc.(bufSetter); ok {
		if n.rcv > 0 {
			_ = bs.SetReadBuffer(n.rcv)
		}
		if n.snd > 0 {
			_ = bs.SetWriteBuffer(n.snd)
		}
	}
	if n.realm != nil {
		return &realmConn{PacketConn: pc, expected: n.realm, dropped: n.realmDrops}, nil
	}
	return pc, nil
}
