package connlib

// dnsTCP handles a TCP segment to a sentinel. TCP DNS to the sentinels
// needs a userspace TCP endpoint; until it lands the segment is dropped
// and the application's resolver falls back (or times out).
func (s *clientState) dnsTCP(pkt []byte) {}
