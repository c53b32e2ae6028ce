package connlib

import wgtun "golang.zx2c4.com/wireguard/tun"

// NewWireGuardDevice returns a wireguard-go tun.Device backed by t, for
// device.NewDevice: a Pipeline without a hook. Buffers, sizes and offsets
// pass straight through, so the device's reader gets packets at its offset
// (MessageTransportHeaderSize, 16) and writes the WireGuard header in place
// in front of them. It reports EventUp once. Read blocks in t.PollRecvMany;
// Write waits for t.SendReady and then calls t.Send (in chunks of
// t.BatchSize), so WireGuard's receive path is slowed by a full Tun instead
// of dropping. Closing the device closes t; after Close, Read and Write
// return os.ErrClosed, on which wireguard-go's TUN reader exits quietly.
//
// Concurrency: wireguard-go calls Read from its single TUN reader goroutine
// and Write from every peer's receive goroutine at once; both are safe
// because the Tun's methods are.
func NewWireGuardDevice(t Tun) wgtun.Device { return NewPipeline(t, nil) }
