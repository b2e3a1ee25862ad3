// Command sshd is the appliance's SSH server (see package apps/sshd).
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"keepnet/apps/httpd"
	"keepnet/apps/netapi"
	"keepnet/apps/sshd"
	"keepnet/apps/stacks"
	"keepnet/boot/ctl"
	"keepnet/kernel/notify"
	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
	"keepnet/servers/store"
)

func main() {
	if err := sandbox.Enter(sandbox.App); err != nil {
		log.Fatal(err)
	}
	stack := flag.String("stack", netapi.StackLinux, "network stack: linux or keepnet")
	port := flag.Int("port", 22, "TCP port")
	keys := flag.String("keys", "", "authorized_keys lines, base64-encoded (keepnet.sshkey)")
	ctlPath := flag.String("ctl", "/run/keepnet/ctl.sock", "init's control socket, for the status command")
	flag.Parse()
	profile.OnSignal() // keepnet profile sshd
	log.SetFlags(0)

	raw, err := base64.StdEncoding.DecodeString(*keys)
	if err != nil {
		log.Printf("-keys: %v", err)
		os.Exit(78)
	}
	authorized, err := sshd.ParseAuthorizedKeys(raw)
	if err != nil {
		log.Print(err)
		os.Exit(78) // a configuration error: restarting will not help
	}
	st := store.Dial(store.DefaultPath)
	defer st.Close()
	host, err := hostKey(st)
	if err != nil {
		log.Fatal(err)
	}
	network, err := stacks.Open(*stack)
	if err != nil {
		log.Fatal(err)
	}
	l, err := network.Listen("tcp", net.JoinHostPort("", strconv.Itoa(*port)))
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving on %v, host key %s, %d authorized keys (%s stack)", l.Addr(), ssh.FingerprintSHA256(host.PublicKey()), len(authorized), *stack)
	if err := notify.Ready(); err != nil {
		log.Print(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cmds := map[string]sshd.Command{
		"echo": sshd.Echo,
		"status": func(_ []string, out io.Writer) int {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			s, err := httpd.QueryStatus(ctx, *ctlPath)
			if err != nil {
				io.WriteString(out, err.Error()+"\n")
				return 1
			}
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			enc.Encode(s)
			return 0
		},
		// store lists the keys of a store namespace as sshd may read
		// them: its own, the shared counters, nobody else's.
		"store": func(args []string, out io.Writer) int {
			if len(args) != 1 {
				io.WriteString(out, "usage: store NAMESPACE\n")
				return 2
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			kvs, err := st.List(ctx, args[0])
			if err != nil {
				io.WriteString(out, err.Error()+"\n")
				return 1
			}
			for _, kv := range kvs {
				io.WriteString(out, kv.Key+"\n")
			}
			return 0
		},
		// kill asks init like `keepnet kill` does; init refuses it to
		// every component, sshd included: only the host may kill.
		"kill": func(args []string, out io.Writer) int {
			if len(args) != 1 {
				io.WriteString(out, "usage: kill COMPONENT\n")
				return 2
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			resp, err := ctl.Do(ctx, *ctlPath, ctl.Request{Verb: ctl.VerbKill, Name: args[0]})
			if err == nil && !resp.OK {
				err = errors.New(resp.Error)
			}
			if err != nil {
				io.WriteString(out, "kill "+args[0]+": "+err.Error()+"\n")
				return 1
			}
			return 0
		},
	}
	if err := sshd.Serve(ctx, l, sshd.Config{HostKey: host, AuthorizedKeys: authorized, Commands: cmds}); err != nil {
		log.Fatal(err)
	}
}

// hostKey is the appliance's host key, kept in the store so that a
// restarted sshd presents the same one.
func hostKey(st *store.Client) (ssh.Signer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if b, ok, err := st.Get(ctx, "sshd", "hostkey"); err == nil && ok {
		if s, err := ssh.ParsePrivateKey(b); err == nil {
			return s, nil
		}
	}
	s, pemBytes, err := sshd.NewHostKey()
	if err != nil {
		return nil, err
	}
	if err := st.Put(ctx, "sshd", "hostkey", pemBytes); err != nil {
		log.Printf("store: keeping the host key: %v", err)
	}
	return s, nil
}
