package snownet

import (
	"encoding/binary"
	"errors"
)

// ChannelData errors.
var (
	ErrChannelDataShort   = errors.New("snownet: channeldata frame too short")
	ErrChannelDataNumber  = errors.New("snownet: channeldata channel number out of range")
	ErrChannelDataLength  = errors.New("snownet: channeldata length exceeds frame")
	ErrChannelDataPadding = errors.New("snownet: channeldata frame has trailing bytes beyond padding")
)

// Channel numbers a TURN server may use (RFC 8656 §12).
const (
	minChannelNumber = 0x4000
	maxChannelNumber = 0x7FFF
)

// ParseChannelData parses a TURN ChannelData frame: a 2-byte channel number
// in 0x4000..0x7FFF, a 2-byte payload length and the payload. Over UDP the
// payload may be followed by up to 3 bytes of padding to a 4-byte boundary;
// anything longer is rejected. The returned payload aliases p. It never
// panics and never allocates.
func ParseChannelData(p []byte) (channel uint16, payload []byte, err error) {
	if len(p) < channelDataHeaderSize {
		return 0, nil, ErrChannelDataShort
	}
	channel = binary.BigEndian.Uint16(p[0:2])
	if channel < minChannelNumber || channel > maxChannelNumber {
		return 0, nil, ErrChannelDataNumber
	}
	n := int(binary.BigEndian.Uint16(p[2:4]))
	rest := p[channelDataHeaderSize:]
	if n > len(rest) {
		return 0, nil, ErrChannelDataLength
	}
	if len(rest)-n > 3 {
		return 0, nil, ErrChannelDataPadding
	}
	return channel, rest[:n:n], nil
}

// AppendChannelData appends a ChannelData frame for payload on channel to
// dst (without padding, as relays accept) and returns the extended slice.
func AppendChannelData(dst []byte, channel uint16, payload []byte) []byte {
	var h [channelDataHeaderSize]byte
	binary.BigEndian.PutUint16(h[0:2], channel)
	binary.BigEndian.PutUint16(h[2:4], uint16(len(payload)))
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}
