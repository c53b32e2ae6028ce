package relay

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v3"
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
	// otherwise the listen IP is used.
	PublicIP netip.Addr
	// MinPort and MaxPort bound the allocation ports (inclusive). Default
	// 49152–65535.
	MinPort, MaxPort uint16
	// Secret is the relay secret the passwords are derived from (hex text).
	// Default: 32 random bytes.
	Secret string
	// Now is the clock for credential expiry. Default time.Now.
	Now func() time.Time
	// Logger; nil means no logging.
	Logger *zap.Logger
}

// Server is a running TURN relay. Allocations live 600 s by default and at
// most 3600 s, channel bindings 600 s (pion's RFC 5766 values, which match
// Firezone's relay). Differences from Firezone's relay: pion does not
// delete an older allocation of the same username, and has no 300 s channel
// rebind cooldown.
//
// Methods are safe for concurrent use; Close stops the relay and frees every
// allocation.
type Server struct {
	cfg     Config
	conn    net.PacketConn
	turn    *turn.Server
	addr    netip.AddrPort // the address devices use
	refused atomic.Uint64
	logs    *logGate
}

// ErrPublicIPRequired is returned by New when the relay listens on a
// wildcard address and no PublicIP is configured.
var ErrPublicIPRequired = errors.New("relay: public IP required when listening on a wildcard address")

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
	conn, err := net.ListenPacket("udp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("relay: listen: %w", err)
	}
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	bindIP := local.Addr().Unmap()
	public := cfg.PublicIP
	if !public.IsValid() {
		if bindIP.IsUnspecified() {
			conn.Close()
			return nil, ErrPublicIPRequired
		}
		public = bindIP
	}
	s := &Server{cfg: cfg, conn: conn, addr: netip.AddrPortFrom(public.Unmap(), local.Port()), logs: &logGate{}}
	bindAddr := bindIP.String()
	if bindIP.IsUnspecified() {
		bindAddr = "0.0.0.0"
	}
	s.turn, err = turn.NewServer(turn.ServerConfig{
		Realm:         Realm,
		AuthHandler:   s.auth,
		LoggerFactory: zapFactory{cfg.Logger, s.logs},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: conn,
			RelayAddressGenerator: &turn.RelayAddressGeneratorPortRange{
				RelayAddress: net.IP(public.Unmap().AsSlice()),
				Address:      bindAddr,
				MinPort:      cfg.MinPort,
				MaxPort:      cfg.MaxPort,
			},
		}},
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	cfg.Logger.Info("relay listening", zap.Stringer("listen", local), zap.Stringer("public", s.addr),
		zap.Uint16("min_port", cfg.MinPort), zap.Uint16("max_port", cfg.MaxPort))
	return s, nil
}

// auth recomputes the password from the username; pion then checks
// MESSAGE-INTEGRITY with MD5(username:realm:password).
func (s *Server) auth(username, realm string, src net.Addr) ([]byte, bool) {
	if realm != Realm {
		s.refused.Add(1)
		return nil, false
	}
	pw, err := Password(s.cfg.Secret, username, s.cfg.Now())
	if err != nil {
		s.refused.Add(1)
		s.logs.do(func() {
			s.cfg.Logger.Debug("relay refused credentials", zap.Stringer("from", src), zap.Error(err))
		})
		return nil, false
	}
	return turn.GenerateAuthKey(username, realm, pw), true
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
func (s *Server) AllocationCount() int { return s.turn.AllocationCount() }

// Refused counts credential checks that failed before MESSAGE-INTEGRITY
// (malformed, expired, wrong realm). Forged passwords fail inside pion and
// are not counted here.
func (s *Server) Refused() uint64 { return s.refused.Load() }

// Close stops the relay. pion's goroutines may still be winding down when
// it returns, but they no longer log.
func (s *Server) Close() error {
	err := s.turn.Close()
	s.logs.close()
	return err
}
