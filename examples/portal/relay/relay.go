// Package relay is the development portal's built-in TURN relay: a TURN
// server (the RFC 8656 subset Firezone's relay implements, plus Send/Data
// indications and CreatePermission for pion's TURN client) that
// authenticates with Firezone's relay credential scheme (reference §5),
// and the functions that mint those credentials.
//
// The data plane is batched: one reader goroutine per socket with
// recvmmsg, forwarding with sendmmsg, ChannelData framed in place (see
// dataplane.go). The control plane (control.go) uses pion/stun.
package relay

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Defaults from reference §5.
const (
	DefaultListenAddr = ":3478"
	DefaultMinPort    = 49152
	DefaultMaxPort    = 65535
)

// Config configures a Server. The zero value of every field means its
// default.
type Config struct {
	// ListenAddr is the UDP address for STUN/TURN control and client-side
	// ChannelData. Default ":3478". Devices expect relays on port 3478;
	// other ports are for tests.
	ListenAddr string
	// PublicIP is the address written into allocations (XOR-RELAYED-ADDRESS)
	// and handed to devices. Required when ListenAddr has a wildcard IP;
	// otherwise the listen IP is used. Its family is the family of every
	// allocation.
	PublicIP netip.Addr
	// MinPort and MaxPort bound the allocation ports (inclusive). Default
	// 49152–65535.
	MinPort, MaxPort uint16
	// Secret is the relay secret the passwords are derived from (hex text).
	// Default: 32 random bytes.
	Secret string
	// Now is the clock for credential expiry, nonces and lifetimes
	// (allocations, permissions, channels). Default time.Now.
	Now func() time.Time
	// OneAllocationPerUser makes a new ALLOCATE delete any older allocation
	// of the same username, as Firezone's relay does to clean up after a
	// roaming device. Off by default: the dev portal's external relays
	// hand every device the same static username, and pion's per-agent
	// TURN clients (snownet's Config.PionTURN) allocate once per peer.
	OneAllocationPerUser bool
	// NoOffloads turns off UDP GRO on the relay's sockets and UDP GSO on
	// its sends (every datagram crosses the stack alone), for comparison.
	NoOffloads bool
	// Logger; nil means no logging.
	Logger *zap.Logger
}

// Server is a running TURN relay. Allocations live 600 s by default and at
// most 3600 s, permissions 300 s, channel bindings 600 s, and an expired
// channel number stays reserved for its old peer for 300 s.
//
// Methods are safe for concurrent use; Close stops the relay, frees every
// allocation and returns once all its goroutines have ended.
type Server struct {
	cfg    Config
	main   *sock
	addr   netip.AddrPort // the address devices use
	public netip.Addr
	bindIP netip.Addr // allocation sockets bind here
	nonces nonces

	mu       sync.Mutex
	byClient map[netip.AddrPort]*allocation
	byUser   map[string]*allocation
	ports    map[uint16]bool
	closed   bool
	clients  atomic.Pointer[map[netip.AddrPort]*allocation] // snapshot of byClient for the data plane

	refused     atomic.Uint64
	dropped     atomic.Uint64
	toPeers     atomic.Uint64
	toClients   atomic.Uint64
	indications atomic.Uint64

	stop chan struct{}
	wg   sync.WaitGroup
}

// ErrPublicIPRequired is returned by New when the relay listens on a
// wildcard address and no PublicIP is configured.
var ErrPublicIPRequired = errors.New("relay: public IP required when listening on a wildcard address")

// ErrNoPorts is the cause of 508 Insufficient Capacity: no free port in
// the allocation range.
var ErrNoPorts = errors.New("relay: no free allocation port")

// janitorInterval is how often expired allocations, permissions and
// channels are removed.
const janitorInterval = time.Second

// New starts a relay.
func New(cfg Config) (*Server, error) {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = DefaultListenAddr
	}
	if cfg.MinPort == 0 {
		cfg.MinPort = DefaultMinPort
	}
	if cfg.MaxPort == 0 {
		cfg.MaxPort = DefaultMaxPort
	}
	if cfg.MinPort > cfg.MaxPort {
		return nil, fmt.Errorf("relay: port range %d-%d is empty", cfg.MinPort, cfg.MaxPort)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Secret == "" {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		cfg.Secret = hex.EncodeToString(b[:])
	}
	ua, err := net.ResolveUDPAddr("udp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("relay: listen: %w", err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("relay: listen: %w", err)
	}
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	bindIP := local.Addr().Unmap()
	public := cfg.PublicIP.Unmap()
	if !public.IsValid() {
		if bindIP.IsUnspecified() {
			conn.Close()
			return nil, ErrPublicIPRequired
		}
		public = bindIP
	}
	if bindIP.IsUnspecified() {
		bindIP = netip.IPv4Unspecified()
		if public.Is6() {
			bindIP = netip.IPv6Unspecified()
		}
	}
	main, err := newSock(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	main.setBuffers(sockBufSize)
	if !cfg.NoOffloads {
		main.enableGRO()
	}
	s := &Server{cfg: cfg, main: main, addr: netip.AddrPortFrom(public, local.Port()), public: public, bindIP: bindIP,
		byClient: map[netip.AddrPort]*allocation{}, byUser: map[string]*allocation{}, ports: map[uint16]bool{},
		stop: make(chan struct{})}
	if _, err := rand.Read(s.nonces.key[:]); err != nil {
		conn.Close()
		return nil, err
	}
	s.clients.Store(&map[netip.AddrPort]*allocation{})
	s.wg.Add(2)
	go s.clientLoop()
	go s.janitor()
	cfg.Logger.Info("relay listening", zap.Stringer("listen", local), zap.Stringer("public", s.addr),
		zap.Uint16("min_port", cfg.MinPort), zap.Uint16("max_port", cfg.MaxPort))
	return s, nil
}

// openRelaySocket binds a free port of the range: random tries first, then
// a scan, so a nearly full range still finds its last port. Server.mu held.
func (s *Server) openRelaySocket() (*sock, uint16, error) {
	span := int(s.cfg.MaxPort) - int(s.cfg.MinPort) + 1
	try := func(port uint16) *sock {
		if s.ports[port] {
			return nil
		}
		network := "udp4"
		if s.bindIP.Is6() {
			network = "udp6"
		}
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.bindIP, port)))
		if err != nil {
			return nil
		}
		sk, err := newSock(c)
		if err != nil {
			c.Close()
			return nil
		}
		sk.setBuffers(sockBufSize)
		if !s.cfg.NoOffloads {
			sk.enableGRO()
		}
		return sk
	}
	for i := 0; i < 32 && i < span; i++ {
		r, err := rand.Int(rand.Reader, big.NewInt(int64(span)))
		if err != nil {
			break
		}
		port := uint16(int(s.cfg.MinPort) + int(r.Int64()))
		if sk := try(port); sk != nil {
			return sk, port, nil
		}
	}
	for p := int(s.cfg.MinPort); p <= int(s.cfg.MaxPort); p++ {
		if sk := try(uint16(p)); sk != nil {
			return sk, uint16(p), nil
		}
	}
	return nil, 0, ErrNoPorts
}

// addLocked registers a and starts its reader. Server.mu held.
func (s *Server) addLocked(a *allocation) {
	s.byClient[a.client] = a
	s.byUser[a.username] = a
	s.ports[a.relayed.Port()] = true
	s.publishClients()
	s.wg.Add(1)
	go s.peerLoop(a)
}

// removeLocked deletes a and closes its socket (which ends its reader).
// Server.mu held.
func (s *Server) removeLocked(a *allocation) {
	if a.closed {
		return
	}
	a.closed = true
	delete(s.byClient, a.client)
	if s.byUser[a.username] == a {
		delete(s.byUser, a.username)
	}
	delete(s.ports, a.relayed.Port())
	s.publishClients()
	a.sock.conn.Close()
}

func (s *Server) publishClients() {
	m := make(map[netip.AddrPort]*allocation, len(s.byClient))
	for k, v := range s.byClient {
		m[k] = v
	}
	s.clients.Store(&m)
}

// janitor expires allocations, permissions and channels.
func (s *Server) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(janitorInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := s.cfg.Now()
		s.mu.Lock()
		for _, a := range s.byClient {
			if !now.Before(a.expires) {
				s.cfg.Logger.Debug("relay allocation expired", zap.Stringer("client", a.client))
				s.removeLocked(a)
				continue
			}
			a.expire(now)
		}
		s.mu.Unlock()
	}
}

// Addr is the address devices use (public IP, listen port).
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Secret is the relay secret (hex), the input of Credentials.
func (s *Server) Secret() string { return s.cfg.Secret }

// Credentials mints credentials for a device's public key.
func (s *Server) Credentials(publicKey string, expiresUnix int64) (username, password string) {
	return Credentials(s.cfg.Secret, publicKey, expiresUnix)
}

// AllocationCount is the number of live allocations.
func (s *Server) AllocationCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byClient)
}

// Refused counts failed authentications: malformed, expired or forged
// usernames, another realm, a wrong MESSAGE-INTEGRITY.
func (s *Server) Refused() uint64 { return s.refused.Load() }

// Stats are the relay's packet counters.
type Stats struct {
	ToPeers     uint64 // ChannelData payloads relayed client → peer
	ToClients   uint64 // peer datagrams relayed to clients as ChannelData
	Indications uint64 // Send indications relayed and Data indications sent
	// Dropped counts datagrams dropped: neither STUN nor ChannelData,
	// undecodable, ChannelData of an unknown client or channel, peer
	// datagrams without permission, oversized, or refused by the kernel.
	Dropped uint64
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{ToPeers: s.toPeers.Load(), ToClients: s.toClients.Load(), Indications: s.indications.Load(),
		Dropped: s.dropped.Load()}
}

// Dropped is Stats().Dropped.
func (s *Server) Dropped() uint64 { return s.dropped.Load() }

// Close stops the relay and waits for its goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, a := range s.byClient {
		s.removeLocked(a)
	}
	close(s.stop)
	err := s.main.conn.Close()
	s.mu.Unlock()
	s.wg.Wait()
	return err
}
