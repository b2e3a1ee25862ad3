package qemu

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// The probe sector must run under TCG, which always works: this proves the
// probe itself is sound, so a KVM probe failure means KVM, not the probe.
func TestProbeAccelTCG(t *testing.T) {
	q, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("KEEPNET_ITEST") == "1" {
			t.Fatal("qemu-system-x86_64 not installed")
		}
		t.Skip("qemu-system-x86_64 not installed")
	}
	if err := ProbeAccel(context.Background(), q, "tcg", 20*time.Second); err != nil {
		t.Fatalf("ProbeAccel(tcg) = %v, want nil", err)
	}
}
