// Package linuxnet is the Linux OS layer the gateway and client binaries
// share: addresses and routes on the TUN interface (netlink), sysctls, socket
// buffer limits, and the gateway's nftables forwarding/masquerade rules.
//
// Every function works on the network namespace of the calling thread (the
// process's, in the binaries).
package linuxnet
