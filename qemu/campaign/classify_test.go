package campaign

import (
	"testing"
	"time"
)

func TestDetectionOf(t *testing.T) {
	for _, tc := range []struct {
		lastExit string
		want     Detection
	}{
		{"exit status 2", DetectPanic},
		{"hung (no answer for 6.2s)", DetectHang},
		{"signal: killed", DetectKilled},
		{"exit status 3 (broken channel)", DetectExit},
		{"exit status 1", DetectExit},
		{"", DetectNone},
	} {
		if got := DetectionOf(tc.lastExit); got != tc.want {
			t.Errorf("DetectionOf(%q) = %s, want %s", tc.lastExit, got, tc.want)
		}
	}
}

// recovered is a run that crashed its component and recovered in 300 ms at
// the rate it had before.
func recovered() Observation {
	return Observation{
		Mode: ModeSite, Reached: true, Fired: true, Detection: DetectPanic, Restarted: []string{"udp"},
		UDPResumed: true, DNSResumed: true, Recovered: true, Recovery: 300 * time.Millisecond,
		RateBefore: 200, RateAfter: 180,
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Observation)
		want   Verdict
	}{
		{"transparent", func(*Observation) {},
			Verdict{Activated: true, Outcome: OutcomeTransparent, UDPTransparent: true, RecoveryMS: 300}},
		{"a connection broke", func(o *Observation) { o.Broken = []string{"broken echo: EOF"} },
			Verdict{Activated: true, Outcome: OutcomeTCPBroken, UDPTransparent: true, TCPBroken: true, RecoveryMS: 300}},
		{"a wrong byte is never transparent", func(o *Observation) { o.Corrupt = []string{"wrong bytes in download"} },
			Verdict{Activated: true, Outcome: OutcomeCorrupted, UDPTransparent: true, Corruption: true, RecoveryMS: 300}},
		{"a wrong byte and a broken connection: corrupted", func(o *Observation) {
			o.Corrupt, o.Broken = []string{"wrong bytes in echo"}, []string{"broken echo"}
		}, Verdict{Activated: true, Outcome: OutcomeCorrupted, UDPTransparent: true, TCPBroken: true, Corruption: true, RecoveryMS: 300}},
		{"manual restart", func(o *Observation) { o.Manual = true },
			Verdict{Activated: true, Outcome: OutcomeManual, RecoveryMS: 300}},
		{"reboot beats everything", func(o *Observation) {
			o.Manual, o.Rebooted, o.Recovered, o.Corrupt = true, true, false, []string{"x"}
		}, Verdict{Activated: true, Outcome: OutcomeReboot, Corruption: true, RecoveryMS: -1}},
		{"UDP stream lost for good", func(o *Observation) { o.UDPResumed = false },
			Verdict{Activated: true, Outcome: OutcomeTransparent, RecoveryMS: 300}},
		{"resolver's socket lost", func(o *Observation) { o.DNSResumed = false },
			Verdict{Activated: true, Outcome: OutcomeTransparent, RecoveryMS: 300}},
		{"degraded", func(o *Observation) { o.RateAfter = 50 },
			Verdict{Activated: true, Outcome: OutcomeTransparent, UDPTransparent: true, Degraded: true, RecoveryMS: 300}},
		{"too slow before to judge degradation", func(o *Observation) { o.RateBefore, o.RateAfter = 2, 0.1 },
			Verdict{Activated: true, Outcome: OutcomeTransparent, UDPTransparent: true, RecoveryMS: 300}},
		{"site never reached", func(o *Observation) {
			o.Reached, o.Fired, o.Detection, o.Restarted = false, false, DetectNone, nil
		}, Verdict{Outcome: OutcomeTransparent, UDPTransparent: true, RecoveryMS: 300}},
		{"reached, no crash", func(o *Observation) { o.Detection, o.Restarted = DetectNone, nil },
			Verdict{Activated: true, Outcome: OutcomeTransparent, UDPTransparent: true, RecoveryMS: 300}},
		{"a signal is always activated", func(o *Observation) {
			o.Mode, o.Reached, o.Fired, o.Detection = ModeSIGKILL, false, false, DetectKilled
		}, Verdict{Activated: true, Outcome: OutcomeTransparent, UDPTransparent: true, RecoveryMS: 300}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := recovered()
			tc.change(&o)
			if got := Classify(o); got != tc.want {
				t.Errorf("Classify = %+v\nwant       %+v", got, tc.want)
			}
		})
	}
}
