package campaign

import (
	"strings"
	"time"
)

// Detection is how the appliance noticed a fault.
type Detection string

const (
	DetectPanic  Detection = "panic"  // the component panicked (exit status 2)
	DetectHang   Detection = "hang"   // init's hang watchdog killed it
	DetectExit   Detection = "exit"   // it exited with another status (a broken channel, an error)
	DetectKilled Detection = "killed" // it died of a signal (the campaign's own SIGKILL)
	DetectNone   Detection = "none"   // no component restarted
)

// DetectionOf reads a component's last exit as keepnet status gives it
// (boot/supervisor: "exit status 2", "hung (no answer for 5s)", "signal:
// killed", "exit status 3 (broken channel)").
func DetectionOf(lastExit string) Detection {
	switch {
	case strings.HasPrefix(lastExit, "hung"):
		return DetectHang
	case strings.HasPrefix(lastExit, "exit status 2"):
		return DetectPanic
	case strings.HasPrefix(lastExit, "signal:"):
		return DetectKilled
	case lastExit == "":
		return DetectNone
	}
	return DetectExit
}

// Outcome is the paper's classification of a run (Table IV), with wrong
// bytes as an outcome of their own: the paper could not see them.
type Outcome string

const (
	// OutcomeTransparent: the workload went on; no connection broke, no
	// byte was wrong.
	OutcomeTransparent Outcome = "transparent"
	// OutcomeTCPBroken: reachable without help, but an established TCP
	// connection broke.
	OutcomeTCPBroken Outcome = "tcp-broken"
	// OutcomeCorrupted: a wrong byte reached the workload (silent
	// corruption). Never transparent, whatever else went well.
	OutcomeCorrupted Outcome = "corrupted"
	// OutcomeManual: reachable again only after the campaign restarted
	// the component by hand (keepnet restart).
	OutcomeManual Outcome = "manual-restart"
	// OutcomeReboot: not reachable even after that; the appliance was
	// rebooted.
	OutcomeReboot Outcome = "reboot"
)

// Outcomes in the order the report lists them.
var Outcomes = []Outcome{OutcomeTransparent, OutcomeTCPBroken, OutcomeCorrupted, OutcomeManual, OutcomeReboot}

// Observation is what the campaign saw during one run, before judging it.
type Observation struct {
	Mode string // ModeSite, ModeSIGKILL, ModeSIGSTOP
	// Reached: the armed site was hit (the fault runtime's console line);
	// Fired: its fault was injected.
	Reached, Fired bool
	// Detection is how the faulted component (or the first other one that
	// restarted) ended; Restarted names every component that restarted.
	Detection Detection
	Restarted []string
	// Manual and Rebooted: what it took to make the appliance reachable.
	Manual, Rebooted bool
	// Corrupt and Broken list the workload's incidents in the run (What).
	Corrupt, Broken []string
	// UDPResumed and DNSResumed: after detection (or disarming), the UDP
	// echo stream and the resolver's queries flowed again on their sockets.
	UDPResumed, DNSResumed bool
	// Recovered: download, echo session and UDP echo all flowed again,
	// Recovery after detection.
	Recovered bool
	Recovery  time.Duration
	// RateBefore and RateAfter are the download's throughput before the
	// fault and after recovery, in Mbit/s.
	RateBefore, RateAfter float64
}

// Verdict is a run judged.
type Verdict struct {
	Activated      bool
	Outcome        Outcome
	UDPTransparent bool
	TCPBroken      bool
	Corruption     bool
	Degraded       bool
	RecoveryMS     int64 // -1: did not recover by itself
}

// degradedBelow is the share of the throughput before the fault under which
// the throughput after recovery counts as degraded: far below, since a
// download under TCG on a shared host varies by a third from second to
// second.
const degradedBelow = 0.4

// minRateForDegraded is the throughput before a fault below which the
// campaign does not judge degradation at all: the download was not running
// fast enough to tell.
const minRateForDegraded = 5 // Mbit/s

// Classify judges a run from what was observed.
func Classify(o Observation) Verdict {
	v := Verdict{
		Activated:  o.Mode != ModeSite || o.Reached || o.Fired || o.Detection != DetectNone,
		Corruption: len(o.Corrupt) > 0,
		TCPBroken:  len(o.Broken) > 0,
		RecoveryMS: -1,
	}
	v.UDPTransparent = o.UDPResumed && o.DNSResumed && !o.Manual && !o.Rebooted
	if o.Recovered {
		v.RecoveryMS = o.Recovery.Milliseconds()
	}
	v.Degraded = o.Recovered && o.RateBefore >= minRateForDegraded && o.RateAfter < degradedBelow*o.RateBefore
	switch {
	case o.Rebooted:
		v.Outcome = OutcomeReboot
	case o.Manual:
		v.Outcome = OutcomeManual
	case v.Corruption:
		v.Outcome = OutcomeCorrupted
	case v.TCPBroken:
		v.Outcome = OutcomeTCPBroken
	default:
		v.Outcome = OutcomeTransparent
	}
	return v
}
