// Package hubtest runs a component's command as a child process wired by a
// real hub, for the tests of the commands (cmd/tcp, cmd/udp, cmd/pf): the
// test binary starts itself again with an environment variable set, which
// makes the command's TestMain run its main instead of the tests.
package hubtest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"keepnet/boot/hub"
	"keepnet/servers/store"
)

// Store serves a store on a Unix socket until the test ends and returns
// the socket's path.
func Store(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	path := filepath.Join(t.TempDir(), "store.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go store.NewServer().Serve(ctx, l)
	return path
}

// Main is a command's TestMain: with the environment variable child set
// to 1 the binary is the command, and main runs; otherwise the tests do.
func Main(m *testing.M, child string, main func()) {
	if os.Getenv(child) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Start starts the next generation of component name: the test binary
// with the variable child ("KEEPNET_TCP_CHILD") set to 1 and args, its
// wiring socket (fd 3) from h, its standard error in the test's log. It
// is killed when the test ends.
func Start(t *testing.T, h *hub.Hub, name, child string, args ...string) *exec.Cmd {
	t.Helper()
	files, err := h.ExtraFiles(name)(func() {})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), child+"=1")
	cmd.ExtraFiles = files // fd 3: the wiring socket
	cmd.Stderr = logWriter{t, name}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// logWriter puts what a child writes in the test's log, under its name.
type logWriter struct {
	t    *testing.T
	name string
}

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, b)
	return len(b), nil
}
