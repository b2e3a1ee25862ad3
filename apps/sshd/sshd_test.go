package sshd

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func signer(t *testing.T) ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestExecAndAuth(t *testing.T) {
	host, _, err := NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	user := signer(t)
	keys, err := ParseAuthorizedKeys(ssh.MarshalAuthorizedKey(user.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, Config{HostKey: host, AuthorizedKeys: keys, Commands: map[string]Command{"echo": Echo}})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v after cancel, want nil", err)
		}
	}()

	dial := func(s ssh.Signer) (*ssh.Client, error) {
		return ssh.Dial("tcp", l.Addr().String(), &ssh.ClientConfig{
			User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(s)},
			HostKeyCallback: ssh.FixedHostKey(host.PublicKey()),
		})
	}
	c, err := dial(user)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct {
		cmd, out string
		status   int
	}{
		{"echo hello", "hello\n", 0},
		{"echo  a   b", "a b\n", 0},
		{"help", "commands: help cat echo\n", 0},
		{"rm -rf /", "", 127},
	}
	for _, tt := range tests {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.Output(tt.cmd)
		status := 0
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			status = ee.ExitStatus()
		} else if err != nil {
			t.Fatalf("%q: %v", tt.cmd, err)
		}
		if string(out) != tt.out || status != tt.status {
			t.Errorf("ssh %q = %q, status %d; want %q, %d", tt.cmd, out, status, tt.out, tt.status)
		}
	}
	// cat echoes what it is sent, line by line, until EOF.
	s, _ := c.NewSession()
	in, _ := s.StdinPipe()
	outp, _ := s.StdoutPipe()
	if err := s.Start("cat"); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(outp)
	for i := range 3 {
		fmt.Fprintf(in, "line %d\n", i)
		if got, err := lines.ReadString('\n'); got != fmt.Sprintf("line %d\n", i) {
			t.Fatalf("cat echoed %q, %v; want line %d", got, err, i)
		}
	}
	in.Close()
	if err := s.Wait(); err != nil {
		t.Errorf("cat after EOF: %v", err)
	}

	s, _ = c.NewSession()
	if err := s.Shell(); err == nil {
		t.Error("a shell was granted; the appliance has none")
	}

	if _, err := dial(signer(t)); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("a key not authorized: %v, want refused", err)
	}
}
