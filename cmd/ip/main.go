// Command ip is the IP server process (see package servers/ip).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"keepnet/kernel/exitcode"
	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
	"keepnet/servers/ip"
	"keepnet/servers/store"
)

func main() {
	if err := sandbox.Enter(sandbox.IP); err != nil {
		log.Fatal(err)
	}
	addr := flag.String("addr", "", "address and prefix, e.g. 10.0.2.15/24, or dhcp")
	gw := flag.String("gw", "", "default gateway")
	driver := flag.String("driver", "e1000.0", "the NIC driver component")
	udp := flag.String("udp", "udp", "the UDP transport component (empty: none)")
	tcp := flag.String("tcp", "", "the TCP transport component (empty: none)")
	filter := flag.String("pf", "", "the packet filter component (empty: none, nothing waits for a verdict)")
	var v6 ip.IPv6Config
	flag.Func("addr6", "an IPv6 address and prefix of the first interface, e.g. fd00:78::15/64; repeat for more", func(v string) error {
		p, err := netip.ParsePrefix(v)
		v6.Static = append(v6.Static, p)
		return err
	})
	flag.Func("gw6", "the IPv6 default router, when none advertises itself", func(v string) (err error) {
		v6.Gateway, err = netip.ParseAddr(v)
		return err
	})
	ipv6 := flag.Bool("ipv6", true, "IPv6 on the first interface: link-local, SLAAC, -addr6")
	var more []ip.Iface
	flag.Func("iface", "another interface, DRIVER=ADDRESS/PREFIX (e.g. e1000.1=10.78.0.1/24); repeat for more", func(v string) error {
		i, err := parseIface(v)
		more = append(more, i)
		return err
	})
	var routes []ip.StaticRoute
	flag.Func("route", "a static route, PREFIX,via=GATEWAY (e.g. 10.90.0.0/16,via=10.78.0.2); repeat for more", func(v string) error {
		r, err := ip.ParseRoute(v)
		routes = append(routes, r)
		return err
	})
	forward := flag.Bool("forward", false, "forward between the interfaces")
	storePath := flag.String("store", store.DefaultPath, "the store's socket")
	flag.Parse()
	profile.OnSignal() // keepnet profile ip
	log.SetFlags(0)

	var cfg ip.Config
	var err error
	useDHCP := *addr == "dhcp"
	if !useDHCP {
		if cfg.Addr, err = netip.ParsePrefix(*addr); err != nil {
			log.Printf("-addr %q: %v", *addr, err)
			os.Exit(exitcode.Config) // restarting will not help
		}
	} else if len(more) > 0 || len(routes) > 0 || *gw != "" {
		log.Printf("-addr dhcp: the address, subnet and router come from the DHCP server; no -iface, -route or -gw with it")
		os.Exit(exitcode.Config)
	}
	if *gw != "" {
		if cfg.Gateway, err = netip.ParseAddr(*gw); err != nil {
			log.Printf("-gw %q: %v", *gw, err)
			os.Exit(exitcode.Config)
		}
	}
	v6.Off = !*ipv6
	ifaces := append([]ip.Iface{{Driver: *driver, Config: cfg, DHCP: useDHCP, IPv6: v6}}, more...)
	nets := make([]netip.Prefix, len(ifaces))
	for i, ifc := range ifaces {
		nets[i] = ifc.Config.Addr
	}
	if err := ip.CheckRoutes(nets, routes); err != nil {
		log.Printf("-route: %v", err)
		os.Exit(exitcode.Config)
	}
	st := store.Dial(*storePath)
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	transports := map[uint8]string{}
	if *udp != "" {
		transports[17] = *udp
	}
	if *tcp != "" {
		transports[6] = *tcp
	}
	if err := ip.Serve(ctx, ip.ServerOptions{Name: "ip", Ifaces: ifaces, Routes: routes, Forward: *forward,
		Transports: transports, Store: st, Filter: *filter}); err != nil {
		exitcode.Exit(err) // a broken channel: exitcode.BrokenChannel
	}
}

// parseIface reads -iface's DRIVER=ADDRESS/PREFIX.
func parseIface(v string) (ip.Iface, error) {
	driver, addr, ok := strings.Cut(v, "=")
	p, err := netip.ParsePrefix(addr)
	if !ok || driver == "" || err != nil {
		return ip.Iface{}, fmt.Errorf("%q: want DRIVER=ADDRESS/PREFIX, like e1000.1=10.78.0.1/24", v)
	}
	return ip.Iface{Driver: driver, Config: ip.Config{Addr: p}}, nil
}
