package pid1

import (
	"context"
	"fmt"
	"net"
	"net/netip"
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

// Why the Linux stack is not usable the moment configureLinuxStack returns:
// the kernel's e1000 driver opens the interface without carrier; its
// watchdog finds the link (after the link-status interrupt the open
// triggers) and turns the carrier on, and linkwatch — rate-limited to one
// run a second — then marks the interface operationally up and attaches its
// queueing discipline (dev_activate), both under RTNL. Until then every
// frame sent, an ARP reply too, goes to the noop qdisc and is dropped: the
// appliance "answered no ARP for about a second". So the interface counts
// as usable only once its operational state is up (read over netlink, which
// takes RTNL: by then the qdisc is attached) and its address is configured.

// linkUsable says whether l can carry traffic now and, if not, why.
func linkUsable(l netlink.Link, addr netip.Prefix) (bool, string) {
	a := l.Attrs()
	if a.Flags&net.FlagUp == 0 {
		return false, a.Name + " is down"
	}
	if a.OperState != netlink.OperUp {
		return false, fmt.Sprintf("%s is not operationally up yet (operstate %v)", a.Name, a.OperState)
	}
	if !addr.IsValid() {
		return true, ""
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Sprintf("%s: listing addresses: %v", a.Name, err)
	}
	for _, got := range addrs {
		if ip, ok := netip.AddrFromSlice(got.IP); ok && ip.Unmap() == addr.Addr() {
			return true, ""
		}
	}
	return false, fmt.Sprintf("%s has no address %v yet", a.Name, addr)
}

// watchLink reports, through set, whether the named interface is usable
// (linkUsable), at once and at every change the kernel announces, until ctx
// ends.
func watchLink(ctx context.Context, name string, addr netip.Prefix, set func(met bool, why string)) {
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribe(updates, done); err != nil {
		set(false, fmt.Sprintf("watching %s: %v", name, err))
		return
	}
	check := func() {
		l, err := netlink.LinkByName(name)
		if err != nil {
			set(false, fmt.Sprintf("%s: %v", name, err))
			return
		}
		set(linkUsable(l, addr))
	}
	check()
	for {
		select {
		case u, ok := <-updates:
			if !ok {
				set(false, fmt.Sprintf("watching %s: netlink subscription ended", name))
				return
			}
			if u.Link != nil && u.Link.Attrs().Name == name {
				check()
			}
		case <-ctx.Done():
			return
		}
	}
}
