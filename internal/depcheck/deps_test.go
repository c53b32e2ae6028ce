package depcheck

import (
	_ "github.com/coder/websocket"
	_ "github.com/google/nftables"
	_ "github.com/miekg/dns"
	_ "github.com/pion/ice/v3"
	_ "github.com/pion/transport/v3/vnet"
	_ "github.com/pion/turn/v3"
	_ "github.com/vishvananda/netlink"
	_ "go.uber.org/goleak"
	_ "go.uber.org/zap"
	_ "golang.zx2c4.com/wireguard/device"
	_ "golang.zx2c4.com/wireguard/tun/netstack"
	_ "gopkg.in/yaml.v3"
)
