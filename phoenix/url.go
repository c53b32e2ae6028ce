package phoenix

import (
	"errors"
	"net/url"
	"strings"
)

// Param is one query parameter of the socket URL. Order matters to the
// portal's logs and to Firezone compatibility, so parameters are a list,
// not a map (reference §4.1: external_id, name, …, public_key last).
type Param struct {
	Key, Value string
}

// BuildURL turns a portal base URL such as "https://api.example.com/gateway/v2"
// into the socket URL "wss://api.example.com/gateway/v2/websocket?k=v&…":
// http→ws, https→wss (ws and wss are kept), "/websocket" appended unless
// already there, query parameters of base kept first and then params in
// their given order.
func BuildURL(base string, params []Param) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return nil, errors.New("phoenix: portal URL scheme must be ws, wss, http or https")
	}
	if u.Host == "" {
		return nil, errors.New("phoenix: portal URL has no host")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(u.Path, "/websocket") {
		u.Path += "/websocket"
	}
	u.RawPath = ""
	var q strings.Builder
	q.WriteString(u.RawQuery)
	for _, p := range params {
		if q.Len() > 0 {
			q.WriteByte('&')
		}
		q.WriteString(url.QueryEscape(p.Key))
		q.WriteByte('=')
		q.WriteString(url.QueryEscape(p.Value))
	}
	u.RawQuery = q.String()
	u.Fragment = ""
	return u, nil
}

// RedactURL returns u as a string fit for logs: the value of any "token"
// query parameter (the legacy way to pass the token) and any user
// password are replaced.
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	if c.User != nil {
		c.User = url.User("REDACTED")
	}
	if c.RawQuery != "" {
		parts := strings.Split(c.RawQuery, "&")
		for i, p := range parts {
			k, _, _ := strings.Cut(p, "=")
			if uk, err := url.QueryUnescape(k); err == nil && strings.EqualFold(uk, "token") {
				parts[i] = k + "=REDACTED"
			}
		}
		c.RawQuery = strings.Join(parts, "&")
	}
	return c.String()
}

// UserAgent formats the User-Agent the portal expects (reference §4.1):
// "<os_type>/<os_version> <component>/<version> (<arch>; <kernel>)", e.g.
// "Ubuntu/24.04 gateway/1.6.1 (x86_64; 6.8.0-45-generic)". Non-ASCII and
// control characters are stripped. The portal derives the version from
// the component token (gateway/, headless-client/, connlib/, …).
func UserAgent(osType, osVersion, component, version, arch, kernel string) string {
	s := osType + "/" + osVersion + " " + component + "/" + version + " (" + arch + "; " + kernel + ")"
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, s)
}
