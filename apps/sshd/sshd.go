// Package sshd is the appliance's SSH server: it accepts the public keys it
// is given (keepnet up --authorized-keys) and runs a few built-in commands.
// There is no shell on the appliance; "ssh appliance echo hello" runs the
// built-in echo. Like every app it takes its listener from outside, so it
// runs unchanged on either network stack.
package sshd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Command is a built-in: it writes its output to out and returns the exit
// status.
type Command func(args []string, out io.Writer) int

// Config is one server.
type Config struct {
	HostKey        ssh.Signer
	AuthorizedKeys []ssh.PublicKey
	Commands       map[string]Command
	// IdleTimeout closes a connection with no traffic; every wait is bounded.
	IdleTimeout time.Duration
}

// NewHostKey makes an ed25519 host key and its private key bytes (PEM),
// for a caller that keeps it (in the store) across restarts.
func NewHostKey() (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "keepnet host key")
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return signer, pemEncode(block.Type, block.Bytes), nil
}

// ParseAuthorizedKeys reads authorized_keys lines.
func ParseAuthorizedKeys(b []byte) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for len(bytes.TrimSpace(b)) > 0 {
		k, _, _, rest, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			return nil, fmt.Errorf("authorized keys: %w", err)
		}
		keys = append(keys, k)
		b = rest
	}
	if len(keys) == 0 {
		return nil, errors.New("authorized keys: none given")
	}
	return keys, nil
}

// Serve accepts SSH connections on l until ctx ends.
func Serve(ctx context.Context, l net.Listener, c Config) error {
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	sc := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, k := range c.AuthorizedKeys {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, fmt.Errorf("key %s not authorized", ssh.FingerprintSHA256(key))
		},
	}
	sc.AddHostKey(c.HostKey)
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() { serveConn(ctx, conn, sc, c) })
	}
}

// serveConn runs one SSH connection: each session channel may exec one
// command.
func serveConn(ctx context.Context, conn net.Conn, sc *ssh.ServerConfig, c Config) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // the handshake
	sconn, chans, reqs, err := ssh.NewServerConn(conn, sc)
	if err != nil {
		return
	}
	defer sconn.Close()
	conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { sconn.Close() })
	defer stop()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			continue
		}
		go session(ch, requests, c)
	}
}

// session answers exec requests; a shell or a pty is refused.
func session(ch ssh.Channel, requests <-chan *ssh.Request, c Config) {
	defer ch.Close()
	timer := time.AfterFunc(c.IdleTimeout, func() { ch.Close() })
	defer timer.Stop()
	for req := range requests {
		switch req.Type {
		case "exec":
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			status := run(p.Command, ch, ch, ch.Stderr(), c.Commands)
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
			return
		case "env":
			req.Reply(true, nil) // accepted and ignored: OpenSSH sends LANG
		default:
			req.Reply(false, nil) // no shell, no pty
		}
	}
}

// run runs one command line. Two commands are built in: help, and cat,
// which echoes its input until EOF — an interactive session, the way a
// test keeps one connection busy for as long as it likes.
func run(line string, in io.Reader, out, errOut io.Writer, cmds map[string]Command) int {
	args := strings.Fields(line)
	if len(args) == 0 {
		fmt.Fprintln(errOut, "no command; try help")
		return 2
	}
	switch args[0] {
	case "help":
		names := []string{"cat"}
		for n := range cmds {
			names = append(names, n)
		}
		fmt.Fprintf(out, "commands: help %s\n", strings.Join(sorted(names), " "))
		return 0
	case "cat":
		if _, err := io.Copy(out, in); err != nil {
			fmt.Fprintln(errOut, err)
			return 1
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(errOut, "%s: no such command; try help\n", args[0])
		return 127
	}
	return cmd(args[1:], out)
}

// Echo is the built-in echo.
func Echo(args []string, out io.Writer) int {
	fmt.Fprintln(out, strings.Join(args, " "))
	return 0
}
