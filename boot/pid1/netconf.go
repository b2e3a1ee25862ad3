package pid1

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"

	"keepnet/servers/pf"
)

// configureLinuxStack sets up the baseline stack (keepnet.stack=linux)
// that keepnet is measured against, on the interfaces the kernel's own
// e1000 driver created, and returns their names, NIC by NIC: NIC 0 gets
// cfg's address, default route and DNS server, NIC i its keepnet.nic
// address (cfg.MoreNICs[i-1]); the static routes are added, and with more
// than one NIC the kernel forwards between them unless keepnet.forward=off,
// as keepnet's ip does. With keepnet.pfrules the rule set is loaded into
// nf_tables (nftables.go) before any interface comes up; if it cannot be,
// no interface comes up: a filter asked for never fails open. It waits
// (bounded) for the driver to create the interfaces. With keepnet.ip=dhcp
// NIC 0's address, default route and DNS server come from a DHCP server
// (linuxDHCP), and are written into cfg.
func configureLinuxStack(cfg *Config, timeout time.Duration) ([]string, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	nics, err := waitNICs(cfg.NICs(), timeout)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(nics))
	for i, l := range nics {
		names[i] = l.Attrs().Name
	}
	if cfg.PFRules != "" {
		if err := loadLinuxFilter(*cfg, names); err != nil {
			return names, fmt.Errorf("packet filter: %w; no interface brought up", err)
		}
	}
	if !cfg.IPv6 { // as keepnet.ipv6=off on keepnet's stack
		for _, n := range names {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+n+"/disable_ipv6", []byte("1"), 0o644); err != nil {
				return names, fmt.Errorf("%s: IPv6 off: %w", n, err)
			}
		}
	}
	for i, link := range nics {
		if err := netlink.LinkSetUp(link); err != nil {
			return names, fmt.Errorf("%s up: %w", names[i], err)
		}
		if i == 0 && cfg.DHCP {
			if err := linuxDHCP(cfg, link, dhcpTimeout); err != nil {
				return names, err
			}
			continue // the lease's address and route are in place
		}
		addr := cfg.NICAddr(i)
		if addr.IsValid() {
			a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
			if err := netlink.AddrReplace(link, a); err != nil {
				return names, fmt.Errorf("%s address %v: %w", names[i], addr, err)
			}
		}
	}
	// IPv6 as on keepnet's stack: the kernel's own link-local address and
	// SLAAC (accept_ra, its default), and keepnet.ip6's and keepnet.gw6's
	// on the first NIC.
	for _, p := range cfg.IP6 {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)}}
		if err := netlink.AddrReplace(nics[0], a); err != nil {
			return names, fmt.Errorf("%s address %v: %w", names[0], p, err)
		}
	}
	if cfg.Gateway6.IsValid() {
		route := &netlink.Route{LinkIndex: nics[0].Attrs().Index, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Gw: cfg.Gateway6.AsSlice()}
		if err := netlink.RouteReplace(route); err != nil {
			return names, fmt.Errorf("IPv6 default route via %v: %w", cfg.Gateway6, err)
		}
	}
	if cfg.Gateway.IsValid() && !cfg.DHCP {
		route := &netlink.Route{LinkIndex: nics[0].Attrs().Index, Gw: cfg.Gateway.AsSlice()}
		if err := netlink.RouteReplace(route); err != nil {
			return names, fmt.Errorf("default route via %v: %w", cfg.Gateway, err)
		}
	}
	for _, r := range cfg.Routes {
		route := &netlink.Route{Dst: &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)}, Gw: r.Via.AsSlice()}
		if err := netlink.RouteReplace(route); err != nil {
			return names, fmt.Errorf("route %v: %w", r, err)
		}
	}
	forward := "0"
	if cfg.Forwarding() {
		forward = "1"
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(forward), 0o644); err != nil {
		return names, fmt.Errorf("forwarding: %w", err)
	}
	if err := writeResolvConf(*cfg); err != nil {
		return names, err
	}
	return names, nil
}

// writeResolvConf names keepnet.dns in /etc/resolv.conf, where the
// applications' resolvers look, on either stack: Go's on Linux's, and on
// keepnet's the socket library's (servers/socket Resolver, whose queries
// go through keepnet's stack), which a Dial by name uses. Nothing
// without a static keepnet.dns (a DHCP lease's server is written when
// the Linux stack takes it).
func writeResolvConf(cfg Config) error {
	if !cfg.DNS.IsValid() || cfg.DHCP {
		return nil
	}
	return os.WriteFile("/etc/resolv.conf", []byte("nameserver "+cfg.DNS.String()+"\n"), 0o644)
}

// loadLinuxFilter loads cfg's pf rule set into nf_tables, the name of
// keepnet's driver of NIC i (e1000.i, as the rules say) standing for the
// Linux interface names[i].
func loadLinuxFilter(cfg Config, names []string) error {
	rs, err := pf.Parse(cfg.PFRules) // ParseCmdline let only a rule set the parser takes through
	if err != nil {
		return err
	}
	linuxName := func(iface string) string {
		for i, n := range driverNames(cfg) {
			if n == iface {
				return names[i]
			}
		}
		return iface
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	return loadNFTables(c, nftChains(rs, linuxName))
}

// waitNICs waits (bounded) until the kernel has n Ethernet interfaces on
// PCI functions and returns them in PCI address order: NIC i is the
// function keepnet's driver e1000.i would drive (drivers/nic takes the
// i-th function in address order), which QEMU gives the i-th --net's
// slot and MAC (qemu.NthMAC).
func waitNICs(n int, timeout time.Duration) ([]netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	for {
		nics, err := ethernetByPCI()
		if err == nil && len(nics) >= n {
			return nics[:n], nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%d of %d Ethernet interfaces appeared within %v (is every NIC an e1000?)", len(nics), n, timeout)
			}
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ethernetByPCI lists the Ethernet interfaces that sit on a PCI function,
// in the functions' address order.
func ethernetByPCI() ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	type nic struct {
		link netlink.Link
		addr string // PCI address, e.g. 0000:00:03.0
	}
	var nics []nic
	for _, l := range links {
		name := l.Attrs().Name
		if l.Type() != "device" || !strings.HasPrefix(name, "eth") && !strings.HasPrefix(name, "en") {
			continue
		}
		dev, err := filepath.EvalSymlinks("/sys/class/net/" + name + "/device")
		if err != nil {
			continue // not on a bus: no NIC of ours
		}
		nics = append(nics, nic{l, filepath.Base(dev)})
	}
	slices.SortFunc(nics, func(a, b nic) int { return strings.Compare(a.addr, b.addr) })
	out := make([]netlink.Link, len(nics))
	for i, n := range nics {
		out[i] = n.link
	}
	return out, nil
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

// dhcpTimeout bounds the Linux stack's wait for a lease.
const dhcpTimeout = 60 * time.Second

// linuxDHCP gets a lease for link with u-root's DHCP client and puts it in
// place (address, default route, resolv.conf), recording it in cfg. The
// baseline takes one lease and does not renew it: the address stays on
// the interface (the kernel is given no lifetime for it), which is all a
// measurement needs; keepnet's own client (servers/ip/dhcp) renews.
func linuxDHCP(cfg *Config, link netlink.Link, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	name := link.Attrs().Name
	for r := range dhclient.SendRequests(ctx, []netlink.Link{link}, true, false,
		dhclient.Config{Timeout: 4 * time.Second, Retries: int(timeout / (4 * time.Second))}, timeout) {
		if r.Err != nil {
			return fmt.Errorf("%s: DHCP: %w", name, r.Err)
		}
		if err := r.Lease.Configure(); err != nil {
			return fmt.Errorf("%s: DHCP lease: %w", name, err)
		}
		p, ok := r.Lease.(*dhclient.Packet4)
		if !ok {
			return fmt.Errorf("%s: DHCP: not an IPv4 lease", name)
		}
		n := p.Lease()
		bits, _ := n.Mask.Size()
		a, _ := netip.AddrFromSlice(n.IP.To4())
		cfg.IP = netip.PrefixFrom(a, bits)
		if gw := p.P.Router(); len(gw) > 0 {
			cfg.Gateway, _ = netip.AddrFromSlice(gw[0].To4())
		}
		if dns := p.P.DNS(); len(dns) > 0 {
			cfg.DNS, _ = netip.AddrFromSlice(dns[0].To4())
		}
		log.Printf("linux stack: %s leased %v from %v, router %v, DNS %v", name, cfg.IP, p.P.ServerIdentifier(), cfg.Gateway, cfg.DNS)
		return nil
	}
	return fmt.Errorf("%s: DHCP: no answer in %v", name, timeout)
}
