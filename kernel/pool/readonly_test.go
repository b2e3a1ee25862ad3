package pool

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// envReader makes the test binary play a reader process (TestHelperReader).
const envReader = "KEEPNET_POOL_READER_REF"

// A reader that writes a pool it was handed read-only faults itself: the
// process dies, and the owner's bytes are as they were. (Before read-only
// descriptors the write went through and corrupted the owner's packet.)
func TestReaderWriteFaultsTheReader(t *testing.T) {
	owner := create(t, 9, 4, 2048)
	ref, _ := owner.Alloc()
	b, _ := owner.Bytes(ref)
	copy(b, "the owner's packet")
	ro, err := ReopenReadOnly(owner.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestHelperReader$")
	cmd.Env = append(os.Environ(), envReader+"="+strconv.Itoa(int(ref.Off)))
	cmd.ExtraFiles = []*os.File{ro} // fd 3
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !bytes.Contains(out, []byte("fault")) {
		t.Errorf("the reader that wrote its read-only pool ended with %v, want a fault; output:\n%s", err, out)
	}
	if got := string(b[:18]); got != "the owner's packet" {
		t.Errorf("the owner's buffer holds %q after the reader's write, want it unchanged", got)
	}
}

// TestHelperReader is the reader process of TestReaderWriteFaultsTheReader;
// run as a test of its own, it does nothing.
func TestHelperReader(t *testing.T) {
	off, err := strconv.Atoi(os.Getenv(envReader))
	if err != nil {
		return
	}
	p, err := Open(9, os.NewFile(3, "pool"), 4, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Bytes(Ref{Pool: 9, Off: uint32(off), Len: 18})
	if err != nil {
		t.Fatal(err)
	}
	copy(b, "a reader's scribble") // faults: the mapping is read-only
	t.Fatal("the write to a read-only pool went through")
}
