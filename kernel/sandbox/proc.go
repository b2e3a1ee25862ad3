package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Proc is what /proc/PID/status says about a process's privileges.
type Proc struct {
	UID        uint32 // the effective uid
	CapEff     uint64 // effective capabilities, a bit per CAP_* number
	Seccomp    int    // 0 none, 1 strict, 2 filter
	NoNewPrivs bool
}

// Seccomp modes in /proc/PID/status.
const SeccompFilter = 2

// ReadProc reads pid's privileges from /proc/PID/status.
func ReadProc(pid int) (Proc, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Proc{}, err
	}
	return parseProcStatus(b)
}

// parseProcStatus reads the fields of Proc from a /proc/PID/status file:
//
//	Uid:	104	104	104	104     (real, effective, saved, filesystem)
//	CapEff:	0000000000000000
//	NoNewPrivs:	1
//	Seccomp:	2
func parseProcStatus(b []byte) (Proc, error) {
	var (
		p    Proc
		seen int
	)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		if len(f) == 0 {
			continue
		}
		var err error
		switch key {
		case "Uid":
			if len(f) < 2 {
				return p, fmt.Errorf("/proc status: Uid line %q", val)
			}
			var u uint64
			u, err = strconv.ParseUint(f[1], 10, 32)
			p.UID = uint32(u)
		case "CapEff":
			p.CapEff, err = strconv.ParseUint(f[0], 16, 64)
		case "Seccomp":
			p.Seccomp, err = strconv.Atoi(f[0])
		case "NoNewPrivs":
			p.NoNewPrivs = f[0] == "1"
		default:
			continue
		}
		if err != nil {
			return p, fmt.Errorf("/proc status: %s: %w", key, err)
		}
		seen++
	}
	if seen < 4 {
		return p, fmt.Errorf("/proc status: %d of Uid, CapEff, Seccomp, NoNewPrivs found", seen)
	}
	return p, nil
}
