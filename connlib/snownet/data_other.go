//go:build !linux

package snownet

import "golang.zx2c4.com/wireguard/conn"

// batchReader is Linux-only (see data_linux.go).
type batchReader struct{}

func (r *batchReader) close() error { return nil }

// openReaders keeps StdNetBind's receive functions off Linux.
func (b *Bind) openReaders(port uint16, fns []conn.ReceiveFunc) []conn.ReceiveFunc { return fns }

func (b *Bind) closeReaders() {}
