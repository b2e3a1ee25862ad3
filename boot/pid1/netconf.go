package pid1

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// configureLinuxStack brings up the first Ethernet interface the kernel's
// own driver created and gives it cfg's address, default route and DNS
// server: the baseline stack (keepnet.stack=linux) that keepnet is measured
// against. It waits (bounded) for the driver to create the interface.
func configureLinuxStack(cfg Config, timeout time.Duration) (string, error) {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		netlink.LinkSetUp(lo)
	}
	link, err := waitEthernet(timeout)
	if err != nil {
		return "", err
	}
	name := link.Attrs().Name
	if err := netlink.LinkSetUp(link); err != nil {
		return name, fmt.Errorf("%s up: %w", name, err)
	}
	if cfg.IP.IsValid() {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: cfg.IP.Addr().AsSlice(), Mask: net.CIDRMask(cfg.IP.Bits(), 32)}}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return name, fmt.Errorf("%s address %v: %w", name, cfg.IP, err)
		}
	}
	if cfg.Gateway.IsValid() {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: cfg.Gateway.AsSlice()}
		if err := netlink.RouteReplace(route); err != nil {
			return name, fmt.Errorf("default route via %v: %w", cfg.Gateway, err)
		}
	}
	if cfg.DNS.IsValid() {
		if err := os.WriteFile("/etc/resolv.conf", []byte("nameserver "+cfg.DNS.String()+"\n"), 0o644); err != nil {
			return name, err
		}
	}
	return name, nil
}

func waitEthernet(timeout time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	for {
		links, err := netlink.LinkList()
		if err == nil {
			for _, l := range links {
				if n := l.Attrs().Name; l.Type() == "device" && (strings.HasPrefix(n, "eth") || strings.HasPrefix(n, "en")) {
					return l, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no Ethernet interface appeared within %v (is the NIC an e1000?)", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
