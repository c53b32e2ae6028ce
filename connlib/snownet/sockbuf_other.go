//go:build !linux

package snownet

import "go.uber.org/zap"

// setSocketBuffers is a no-op off Linux: StdNetBind's own sizes apply.
func setSocketBuffers(port uint16, rcv, snd int, log *zap.Logger) {}
