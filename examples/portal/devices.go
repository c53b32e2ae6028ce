package devportal

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/phoenix"
)

// gatewayConn is a joined gateway. Fields are fixed at join, except where
// noted; they are read under Portal.mu.
type gatewayConn struct {
	id, siteID, name, externalID string
	publicKey, version           string
	ipv4, ipv6                   netip.Addr
	pskBase                      []byte
	token                        [32]byte
	ch                           *phoenix.Channel
	iceless                      bool // set_snownet_capabilities (mutable)
}

// clientConn is a joined client.
type clientConn struct {
	id, actorID, name, externalID string
	publicKey, version            string
	ipv4, ipv6                    netip.Addr
	pskBase                       []byte
	token                         [32]byte
	ch                            *phoenix.Channel
	iceless                       bool
	userAgent, remoteIP           string
}

// osInfo takes "<os>/<version>" from the first User-Agent token.
func (c *clientConn) osInfo() (name, version *string) {
	first, _, _ := strings.Cut(c.userAgent, " ")
	n, v, ok := strings.Cut(first, "/")
	if !ok || n == "" {
		return nil, nil
	}
	return &n, &v
}

// identity is what Authenticate hands to Join.
type identity struct {
	deviceID, ownerID  string // ownerID: site id or actor id
	externalID, name   string
	publicKey, version string
	token              [32]byte
}

func badParams(detail string) *phoenix.HTTPError {
	return &phoenix.HTTPError{Status: http.StatusBadRequest, Code: "invalid_connect_params", Detail: detail}
}

// connectParams validates what both device kinds send (reference §4.1).
func connectParams(r *http.Request) (externalID, name, key string, err error) {
	q := r.URL.Query()
	key = q.Get("public_key")
	if err := portal.CheckPublicKey(key); err != nil {
		return "", "", "", badParams("public_key: is invalid")
	}
	externalID = q.Get("external_id")
	if externalID == "" {
		externalID = q.Get("firezone_id")
	}
	if externalID == "" {
		return "", "", "", badParams("external_id: can't be blank")
	}
	return externalID, q.Get("name"), key, nil
}

// userAgentVersion returns the version after the first known component
// token ("gateway/1.6.1" → "1.6.1").
func userAgentVersion(ua string) (component, version string, ok bool) {
	for _, tok := range strings.Fields(ua) {
		c, v, found := strings.Cut(tok, "/")
		if !found || v == "" {
			continue
		}
		switch c {
		case "gateway", "headless-client", "connlib", "gui-client", "apple-client", "android-client", "relay":
			return c, v, true
		}
	}
	return "", "", false
}

func (p *Portal) authenticateGateway(r *http.Request, token string) (any, error) {
	if token == "" {
		return nil, phoenix.Unauthorized("missing_token", "no token")
	}
	key := tokenKey(token)
	p.mu.Lock()
	st := p.model.gatewayTokens[key]
	p.mu.Unlock()
	if st == nil {
		return nil, phoenix.Unauthorized("invalid_token", "unknown token")
	}
	extID, name, pub, err := connectParams(r)
	if err != nil {
		return nil, err
	}
	_, version, _ := userAgentVersion(r.UserAgent())
	id := derivedUUID(st.ID, "gateway", extID)
	p.mu.Lock()
	_, online := p.gateways[id]
	p.mu.Unlock()
	if online {
		return nil, &phoenix.HTTPError{Status: http.StatusConflict, Code: "gateway_already_connected",
			Detail: "a gateway with this external_id is already connected"}
	}
	if name == "" {
		name = "gateway-" + id[:8]
	}
	return &identity{deviceID: id, ownerID: st.ID, externalID: extID, name: name, publicKey: pub, version: version, token: key}, nil
}

func (p *Portal) authenticateClient(r *http.Request, token string) (any, error) {
	if token == "" {
		return nil, phoenix.Unauthorized("missing_token", "no token")
	}
	key := tokenKey(token)
	p.mu.Lock()
	a := p.model.clientTokens[key]
	p.mu.Unlock()
	if a == nil {
		return nil, phoenix.Unauthorized("invalid_token", "unknown token")
	}
	_, version, ok := userAgentVersion(r.UserAgent())
	if !ok {
		return nil, badParams("user_agent is invalid")
	}
	extID, name, pub, err := connectParams(r)
	if err != nil {
		return nil, err
	}
	id := derivedUUID(a.ID, "client", extID)
	if name == "" {
		name = "client-" + id[:8]
	}
	return &identity{deviceID: id, ownerID: a.ID, externalID: extID, name: name, publicKey: pub, version: version, token: key}, nil
}
