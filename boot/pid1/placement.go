package pid1

import (
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"

	"keepnet/drivers/pci"
)

// Where components run and where their interrupts arrive, for the status
// ("Processors" in table.go): what an operator checks when the stack is
// meant to have a processor of its own.

// allowedCPUs is the processors a running process may run on, as the
// kernel lists them (/proc/PID/status's Cpus_allowed_list: "0", "1-3"),
// or "" when it is not running.
func allowedCPUs(pid int) string {
	if pid <= 0 {
		return ""
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// deviceInterrupts is, for a driver (its published stats name the PCI
// function it drives), how many interrupts of that function each
// processor has taken since boot; nil for any other component.
func deviceInterrupts(stats json.RawMessage) []int64 {
	var s struct{ PCI string }
	if len(stats) == 0 || json.Unmarshal(stats, &s) != nil || s.PCI == "" {
		return nil
	}
	irqs := pci.Device{Addr: s.PCI}.IRQs()
	if len(irqs) == 0 {
		return nil
	}
	b, err := os.ReadFile("/proc/interrupts")
	if err != nil {
		return nil
	}
	return interruptsPerCPU(string(b), irqs)
}

// interruptsPerCPU sums the rows of /proc/interrupts (text) for irqs, per
// processor: a header of CPU names, then "N: count count ... chip name".
func interruptsPerCPU(text string, irqs []int) []int64 {
	lines := strings.Split(text, "\n")
	if len(lines) == 0 {
		return nil
	}
	cpus := len(strings.Fields(lines[0]))
	var sum []int64
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 1+cpus {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(f[0], ":"))
		if err != nil || !slices.Contains(irqs, n) {
			continue
		}
		if sum == nil {
			sum = make([]int64, cpus)
		}
		for i := range cpus {
			v, _ := strconv.ParseInt(f[1+i], 10, 64)
			sum[i] += v
		}
	}
	return sum
}
