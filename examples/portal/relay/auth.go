package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strconv"
	"time"

	"github.com/pion/stun/v2"
	"go.uber.org/zap"
)

// NonceLifetime is how long a nonce is accepted; older ones get 438 Stale
// Nonce and the client retries with the fresh nonce in that answer.
// Firezone's relay instead allows 10 000 requests per nonce and client
// socket; a time bound needs no per-client state, so a flood of
// unauthenticated requests costs no memory.
const NonceLifetime = 5 * time.Minute

// nonces mints and checks stateless nonces: the issue time (seconds, 16
// hex digits) and an HMAC over it and the client's address, so a nonce is
// only good for the socket it was given to.
type nonces struct{ key [32]byte }

func (n *nonces) mac(ts uint64, client netip.AddrPort) []byte {
	h := hmac.New(sha256.New, n.key[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], ts)
	h.Write(b[:])
	ab, _ := client.MarshalBinary()
	h.Write(ab)
	return h.Sum(nil)[:12]
}

func (n *nonces) make(client netip.AddrPort, now time.Time) string {
	ts := uint64(now.Unix())
	return hex.EncodeToString(binary.BigEndian.AppendUint64(nil, ts)) + hex.EncodeToString(n.mac(ts, client))
}

// valid reports whether nonce was minted for client and is still fresh.
func (n *nonces) valid(nonce string, client netip.AddrPort, now time.Time) bool {
	if len(nonce) != 16+24 {
		return false
	}
	ts, err := strconv.ParseUint(nonce[:16], 16, 64)
	if err != nil {
		return false
	}
	sum, err := hex.DecodeString(nonce[16:])
	if err != nil || !hmac.Equal(sum, n.mac(ts, client)) {
		return false
	}
	age := now.Unix() - int64(ts)
	return age >= -1 && age < int64(NonceLifetime/time.Second)
}

// authenticate checks a request's long-term credentials (RFC 8489 §9.2.4):
// no MESSAGE-INTEGRITY → 401 with REALM and NONCE; USERNAME, REALM or
// NONCE missing → 400; a nonce that is not ours or too old → 438; an
// invalid or expired username, another realm or a wrong password → 401.
// It answers those itself and returns ok=false; otherwise it returns the
// key to sign the response with and the username. Server.mu need not be
// held.
func (s *Server) authenticate(m *stun.Message, from netip.AddrPort, now time.Time) (key stun.MessageIntegrity, username string, ok bool) {
	if !m.Contains(stun.AttrMessageIntegrity) {
		s.challenge(m, from, stun.CodeUnauthorized, s.nonces.make(from, now))
		return nil, "", false
	}
	user, errU := m.Get(stun.AttrUsername)
	realm, errR := m.Get(stun.AttrRealm)
	nonce, errN := m.Get(stun.AttrNonce)
	if errU != nil || errR != nil || errN != nil {
		s.replyError(m, from, nil, stun.CodeBadRequest, "missing USERNAME, REALM or NONCE")
		return nil, "", false
	}
	if !s.nonces.valid(string(nonce), from, now) {
		s.challenge(m, from, stun.CodeStaleNonce, s.nonces.make(from, now))
		return nil, "", false
	}
	// From here on a 401 repeats the client's (valid) nonce, which tells
	// it that retrying with the same credentials is pointless.
	if string(realm) != Realm {
		s.refused.Add(1)
		s.challenge(m, from, stun.CodeUnauthorized, string(nonce))
		return nil, "", false
	}
	pw, err := Password(s.cfg.Secret, string(user), now)
	if err != nil {
		s.refused.Add(1)
		s.cfg.Logger.Debug("relay refused credentials", zap.Stringer("from", from), zap.Error(err))
		s.challenge(m, from, stun.CodeUnauthorized, string(nonce))
		return nil, "", false
	}
	key = stun.NewLongTermIntegrity(string(user), Realm, pw)
	if err := key.Check(m); err != nil {
		s.refused.Add(1)
		s.cfg.Logger.Debug("relay refused message integrity", zap.Stringer("from", from))
		s.challenge(m, from, stun.CodeUnauthorized, string(nonce))
		return nil, "", false
	}
	return key, string(user), true
}

// challenge answers 401 or 438 with REALM and NONCE (unsigned: the client
// has no valid key yet, or it was wrong).
func (s *Server) challenge(m *stun.Message, to netip.AddrPort, code stun.ErrorCode, nonce string) {
	s.replyError(m, to, nil, code, "", stun.NewRealm(Realm), stun.NewNonce(nonce))
}
