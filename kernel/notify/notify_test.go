package notify

import (
	"io"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadyWritesTheLineAndCloses(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := unix.Dup(int(w.Fd())) // what the child inherits
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := ready(strconv.Itoa(fd)); err != nil {
		t.Fatalf("ready(%d) = %v, want nil", fd, err)
	}
	got, err := io.ReadAll(r) // EOF only once ready closed the descriptor
	if err != nil || string(got) != Message {
		t.Errorf("read from the pipe %q, %v; want %q, nil", got, err, Message)
	}
}

func TestReadyWithoutInit(t *testing.T) {
	if err := ready(""); err != nil {
		t.Errorf(`ready("") = %v, want nil (not started by init: nobody to tell)`, err)
	}
	for _, bad := range []string{"x", "-1", "2"} {
		if err := ready(bad); err == nil {
			t.Errorf("ready(%q) = nil, want an error", bad)
		}
	}
}
