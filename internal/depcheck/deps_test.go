package depcheck
import (
 _ "golang.zx2c4.com/wireguard/tun/netstack"
 _ "golang.zx2c4.com/wireguard/device"
 _ "github.com/pion/ice/v3"
 _ "github.com/pion/turn/v3"
 _ "github.com/pion/transport/v3/vnet"
 _ "github.com/coder/websocket"
 _ "github.com/miekg/dns"
 _ "github.com/vishvananda/netlink"
 _ "github.com/google/nftables"
 _ "go.uber.org/zap"
 _ "go.uber.org/goleak"
 _ "gopkg.in/yaml.v3"
)
