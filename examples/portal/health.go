package devportal

import (
	"encoding/json"
	"net/http"
)

// Status is a snapshot for health checks and tests. It carries no tokens
// or keys.
type Status struct {
	Status                string `json:"status"`
	Gateways              int    `json:"gateways"`
	Clients               int    `json:"clients"`
	PendingAuthorizations int    `json:"pending_authorizations"`
	Authorizations        int    `json:"authorizations"`
	RelayAllocations      int    `json:"relay_allocations"`
}

// Status returns the current counts.
func (p *Portal) Status() Status {
	p.mu.Lock()
	s := Status{Status: "ok", Gateways: len(p.gateways), Clients: len(p.clients),
		PendingAuthorizations: len(p.pending), Authorizations: len(p.authz)}
	if p.closed {
		s.Status = "closed"
	}
	p.mu.Unlock()
	if p.relay != nil {
		s.RelayAllocations = p.relay.AllocationCount()
	}
	return s
}

// healthz answers 200 with Status while the portal runs, 503 after Close.
func (p *Portal) healthz(w http.ResponseWriter, _ *http.Request) {
	s := p.Status()
	w.Header().Set("Content-Type", "application/json")
	if s.Status != "ok" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(s)
}
