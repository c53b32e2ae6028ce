package snownet

import (
	"bufio"
	"strconv"
	"strings"
	"time"
)

// peerCounters is what wireguard-go reports per peer.
type peerCounters struct {
	rx, tx        uint64
	lastHandshake time.Time
}

// parseIpcGet reads wireguard-go's UAPI get output into counters keyed by
// the hex public key.
func parseIpcGet(s string) map[string]peerCounters {
	out := make(map[string]peerCounters)
	var (
		cur  string
		c    peerCounters
		secs int64
	)
	flush := func() {
		if cur != "" {
			out[cur] = c
		}
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "public_key":
			flush()
			cur, c, secs = v, peerCounters{}, 0
		case "rx_bytes":
			c.rx, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			c.tx, _ = strconv.ParseUint(v, 10, 64)
		case "last_handshake_time_sec":
			secs, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			ns, _ := strconv.ParseInt(v, 10, 64)
			if secs != 0 || ns != 0 {
				c.lastHandshake = time.Unix(secs, ns)
			}
		}
	}
	flush()
	return out
}
