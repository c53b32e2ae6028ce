package p2pcontrol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// AssignedIPs tells a gateway which proxy IPs a client gave a DNS resource
// name (event 0). The gateway resolves Domain and NATs the proxy IPs to the
// real addresses, then answers with DomainStatus. JSON:
// {"resource":"<uuid>","domain":"a.example.com","proxy_ips":["100.96.0.1",…]}.
type AssignedIPs struct {
	Resource string       // resource UUID, lower-case hyphenated
	Domain   string       // no trailing dot
	ProxyIPs []netip.Addr // 4 (one family) or 8 (IPv4 then IPv6)
}

// NATStatus is the state of a gateway's DNS-resource NAT for one domain.
type NATStatus uint8

const (
	// StatusInactive: the NAT is not set up; traffic will not be routed.
	// Unknown status strings decode to it, as Firezone does.
	StatusInactive NATStatus = iota
	// StatusActive: the NAT is set up and traffic will be routed.
	StatusActive
)

func (s NATStatus) String() string {
	if s == StatusActive {
		return "Active"
	}
	return "Inactive"
}

// DomainStatus answers AssignedIPs (event 1). JSON:
// {"resource":"<uuid>","domain":"a.example.com","status":"Active"}.
type DomainStatus struct {
	Resource string
	Domain   string
	Status   NATStatus
}

type assignedIPsJSON struct {
	Resource string        `json:"resource"`
	Domain   string        `json:"domain"`
	ProxyIPs *[]netip.Addr `json:"proxy_ips"`
}

type domainStatusJSON struct {
	Resource string  `json:"resource"`
	Domain   string  `json:"domain"`
	Status   *string `json:"status"`
}

// AppendAssignedIPs appends an assigned_ips packet. It insists on what a
// gateway expects: a UUID, a valid domain, and 4 or 8 valid IPs without zones.
func AppendAssignedIPs(dst []byte, m AssignedIPs) ([]byte, error) {
	res, dom, err := normResourceDomain(m.Resource, m.Domain)
	if err != nil {
		return dst, err
	}
	if n := len(m.ProxyIPs); n != 4 && n != 8 {
		return dst, fmt.Errorf("p2pcontrol: assigned_ips needs 4 or 8 proxy IPs, got %d", n)
	}
	for _, ip := range m.ProxyIPs {
		if err := checkIP(ip); err != nil {
			return dst, err
		}
	}
	ips := m.ProxyIPs
	payload, err := json.Marshal(assignedIPsJSON{Resource: res, Domain: dom, ProxyIPs: &ips})
	if err != nil {
		return dst, fmt.Errorf("p2pcontrol: encode assigned_ips: %w", err)
	}
	return AppendPacket(dst, EventAssignedIPs, payload)
}

// AppendDomainStatus appends a domain_status packet.
func AppendDomainStatus(dst []byte, m DomainStatus) ([]byte, error) {
	res, dom, err := normResourceDomain(m.Resource, m.Domain)
	if err != nil {
		return dst, err
	}
	st := m.Status.String()
	payload, err := json.Marshal(domainStatusJSON{Resource: res, Domain: dom, Status: &st})
	if err != nil {
		return dst, fmt.Errorf("p2pcontrol: encode domain_status: %w", err)
	}
	return AppendPacket(dst, EventDomainStatus, payload)
}

// DecodeAssignedIPs decodes the JSON payload of an assigned_ips event.
// Unknown fields are ignored; missing or invalid ones are ErrMalformed. Any
// number of proxy IPs is accepted (the sender enforces 4 or 8; the gateway
// decides what to do with odd lists).
func DecodeAssignedIPs(payload []byte) (AssignedIPs, error) {
	var j assignedIPsJSON
	if err := decodeJSON(payload, &j); err != nil {
		return AssignedIPs{}, err
	}
	res, dom, err := normResourceDomain(j.Resource, j.Domain)
	if err != nil {
		return AssignedIPs{}, malformed(err)
	}
	if j.ProxyIPs == nil {
		return AssignedIPs{}, fmt.Errorf("%w: proxy_ips missing", ErrMalformed)
	}
	for _, ip := range *j.ProxyIPs {
		if err := checkIP(ip); err != nil {
			return AssignedIPs{}, malformed(err)
		}
	}
	return AssignedIPs{Resource: res, Domain: dom, ProxyIPs: *j.ProxyIPs}, nil
}

// DecodeDomainStatus decodes the JSON payload of a domain_status event.
// An unknown status string is StatusInactive (forward compatibility).
func DecodeDomainStatus(payload []byte) (DomainStatus, error) {
	var j domainStatusJSON
	if err := decodeJSON(payload, &j); err != nil {
		return DomainStatus{}, err
	}
	res, dom, err := normResourceDomain(j.Resource, j.Domain)
	if err != nil {
		return DomainStatus{}, malformed(err)
	}
	if j.Status == nil {
		return DomainStatus{}, fmt.Errorf("%w: status missing", ErrMalformed)
	}
	st := StatusInactive
	if *j.Status == "Active" {
		st = StatusActive
	}
	return DomainStatus{Resource: res, Domain: dom, Status: st}, nil
}

// Message is a decoded control packet: Event plus the matching field (none
// for goodbye and unknown events).
type Message struct {
	Event        EventType
	AssignedIPs  *AssignedIPs
	DomainStatus *DomainStatus
}

// Decode parses a whole control packet. Unknown event types decode to a
// Message with only Event set; the receiver ignores them.
func Decode(pkt []byte) (Message, error) {
	ev, payload, err := Parse(pkt)
	if err != nil {
		return Message{}, err
	}
	m := Message{Event: ev}
	switch ev {
	case EventAssignedIPs:
		a, err := DecodeAssignedIPs(payload)
		if err != nil {
			return Message{}, err
		}
		m.AssignedIPs = &a
	case EventDomainStatus:
		d, err := DecodeDomainStatus(payload)
		if err != nil {
			return Message{}, err
		}
		m.DomainStatus = &d
	}
	return m, nil
}

func decodeJSON(payload []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(payload))
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if d.More() {
		return fmt.Errorf("%w: trailing data after JSON", ErrMalformed)
	}
	return nil
}

func malformed(err error) error { return fmt.Errorf("%w: %v", ErrMalformed, err) }

// normResourceDomain normalises the resource id and domain every control
// message carries (normResource, then normDomain).
func normResourceDomain(resource, domain string) (res, dom string, err error) {
	if res, err = normResource(resource); err != nil {
		return "", "", err
	}
	if dom, err = normDomain(domain); err != nil {
		return "", "", err
	}
	return res, dom, nil
}

// normResource checks a UUID in 8-4-4-4-12 hex form and lower-cases it.
func normResource(s string) (string, error) {
	if len(s) != 36 {
		return "", fmt.Errorf("p2pcontrol: resource %q is not a UUID", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", fmt.Errorf("p2pcontrol: resource %q is not a UUID", s)
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return "", fmt.Errorf("p2pcontrol: resource %q is not a UUID", s)
			}
		}
	}
	return strings.ToLower(s), nil
}

// normDomain checks a DNS name and drops a trailing dot. Case is kept: the
// gateway resolves the name as given.
func normDomain(s string) (string, error) {
	d := strings.TrimSuffix(s, ".")
	if d == "" || len(d) > 253 {
		return "", fmt.Errorf("p2pcontrol: invalid domain %q", s)
	}
	if _, ok := mdns.IsDomainName(d); !ok || strings.Contains(d, "..") {
		return "", fmt.Errorf("p2pcontrol: invalid domain %q", s)
	}
	return d, nil
}

func checkIP(ip netip.Addr) error {
	if !ip.IsValid() || ip.Zone() != "" || ip.Is4In6() {
		return fmt.Errorf("p2pcontrol: invalid proxy IP %v", ip)
	}
	return nil
}
