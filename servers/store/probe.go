package store

import (
	"context"
	"log"
	"time"

	"keepnet/kernel/wiring"
)

// HookProbe is the test hook with which a component tries what its store
// access must refuse (Access): read another component's pairs and the SSH
// host key, and write into another component's namespace. It logs one line
// per attempt ("probe: store ..."), so a test can check from the console
// that the store refused each.
const HookProbe = "probe-store"

// ProbeHook is HookProbe for a component whose store client is c.
func ProbeHook(c *Client) wiring.Hook {
	return wiring.Hook{Name: HookProbe, Run: func() { probe(c) }}
}

func probe(c *Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	try := func(what string, err error) {
		verdict := "ALLOWED"
		if err != nil {
			verdict = "refused (" + err.Error() + ")"
		}
		log.Printf("probe: store %s: %s", what, verdict)
	}
	for _, k := range [][2]string{{"sshd", "hostkey"}, {"ip", "config"}} {
		_, _, err := c.Get(ctx, k[0], k[1])
		try("get "+k[0]+"/"+k[1], err)
	}
	try("put ip/config", c.Put(ctx, "ip", "config", []byte("probe")))
}
