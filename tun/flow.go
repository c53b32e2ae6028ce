package tun

import "encoding/binary"

// FlowHash returns a hash of the flow pkt belongs to, for pinning flows to
// one of several device queues so that no flow is ever reordered.
//
// For unfragmented TCP and UDP packets the flow is the 5-tuple; for
// everything else (ICMP, other protocols, IPv4 fragments, IPv6 packets with
// extension headers in front of the transport header) it is the address pair
// and the protocol number. All fragments of a datagram therefore share a
// queue, but they may take a different queue than unfragmented packets of the
// same 5-tuple; TCP does not fragment (DF, PMTU discovery), so only UDP
// datagrams that straddle fragmentation can be reordered against each other,
// which UDP permits.
//
// The hash is symmetric: a packet and its reply (addresses and ports
// swapped) hash the same, so both directions of a connection use one
// queue. That matters where the flow-steering program cannot be loaded:
// the Linux TUN driver then learns, per flow, the queue a flow was last
// written on and reads it out on that queue (automq), and a flow moves at
// most once, at our first write.
//
// ok is false when pkt is not a well-formed enough IPv4/IPv6 packet to
// identify a flow (too short, wrong version, bad IHL); such packets cannot be
// delivered by a TUN anyway. FlowHash never panics and does not allocate.
func FlowHash(pkt []byte) (h uint64, ok bool) {
	if len(pkt) < 1 {
		return 0, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return 0, false
		}
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < 20 || ihl > len(pkt) {
			return 0, false
		}
		proto := pkt[9]
		a := uint64(binary.BigEndian.Uint32(pkt[12:16]))
		b := uint64(binary.BigEndian.Uint32(pkt[16:20]))
		var pa, pb uint64
		// More-fragments flag or a fragment offset: not every fragment
		// carries the ports, so use the address pair for all of them.
		fragmented := binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0
		if !fragmented && hasPorts(proto) && len(pkt) >= ihl+4 {
			pa = uint64(binary.BigEndian.Uint16(pkt[ihl:]))
			pb = uint64(binary.BigEndian.Uint16(pkt[ihl+2:]))
		}
		ka, kb := a<<16|pa, b<<16|pb
		if ka > kb {
			ka, kb = kb, ka
		}
		return mix64(mix64(ka^uint64(proto)<<56) ^ kb), true
	case 6:
		if len(pkt) < 40 {
			return 0, false
		}
		proto := pkt[6]
		ah := binary.BigEndian.Uint64(pkt[8:16])
		al := binary.BigEndian.Uint64(pkt[16:24])
		bh := binary.BigEndian.Uint64(pkt[24:32])
		bl := binary.BigEndian.Uint64(pkt[32:40])
		var pa, pb uint64
		if hasPorts(proto) && len(pkt) >= 44 {
			pa = uint64(binary.BigEndian.Uint16(pkt[40:]))
			pb = uint64(binary.BigEndian.Uint16(pkt[42:]))
		}
		if ah > bh || (ah == bh && (al > bl || (al == bl && pa > pb))) {
			ah, al, pa, bh, bl, pb = bh, bl, pb, ah, al, pa
		}
		h := mix64(ah ^ uint64(proto)<<56)
		h = mix64(h ^ al)
		h = mix64(h ^ (pa<<16 | pb))
		h = mix64(h ^ bh)
		return mix64(h ^ bl), true
	}
	return 0, false
}

func hasPorts(proto byte) bool {
	return proto == 6 || proto == 17 // TCP, UDP
}

// mix64 is the splitmix64 finalizer: cheap, and every input bit affects
// every output bit, so taking the high bits for a queue index spreads well.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// queueFor maps a flow hash onto one of n queues (n >= 1) without a
// division.
func queueFor(h uint64, n int) int {
	return int((h >> 32) * uint64(n) >> 32)
}
