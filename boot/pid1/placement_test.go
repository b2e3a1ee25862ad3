package pid1

import (
	"os"
	"slices"
	"testing"
)

func TestInterruptsPerCPU(t *testing.T) {
	const text = `           CPU0       CPU1       
  0:         41          0   IO-APIC   2-edge      timer
 11:       5120         17   IO-APIC  11-fasteoi   uio_pci_generic
 24:          3        900   PCI-MSI 49152-edge      vfio-msi[0](0000:00:03.0)
NMI:          0          0   Non-maskable interrupts
`
	if got := interruptsPerCPU(text, []int{11, 24}); !slices.Equal(got, []int64{5123, 917}) {
		t.Errorf("interrupts of 11 and 24 per CPU = %v, want [5123 917]", got)
	}
	if got := interruptsPerCPU(text, []int{10}); got != nil {
		t.Errorf("interrupts of an irq not listed = %v, want nil", got)
	}
}

func TestAllowedCPUs(t *testing.T) {
	if got := allowedCPUs(os.Getpid()); got == "" {
		t.Error("allowedCPUs(self) is empty")
	}
	if got := allowedCPUs(0); got != "" {
		t.Errorf("allowedCPUs(0) = %q", got)
	}
}
