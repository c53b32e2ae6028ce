// Package tun holds gozone's Tun implementations: the Linux TUN device, the
// in-memory pair for tests (NewMemPair) and, in tun/netstack, a userspace
// device on gVisor's netstack. Each satisfies connlib.Tun without importing
// connlib (connlib imports nothing from here either), and each passes the
// shared contract suite in tun/tuntest.
package tun

import "os"

// MaxBatch is the largest batch any device here hands out or accepts; it
// equals connlib.MaxBatch and wireguard-go's conn.IdealBatchSize.
const MaxBatch = 128

// ErrClosed is returned by every method of a device in this package called
// after Close, and by calls that were blocked when Close happened. It
// matches os.ErrClosed under errors.Is, which is what wireguard-go's device
// checks to end its TUN reader quietly.
var ErrClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string { return "tun: device closed" }

func (closedError) Is(target error) bool { return target == os.ErrClosed }
