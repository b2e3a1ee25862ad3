package qemu

import (
	"testing"
	"time"

	"keepnet/boot/ctl"
)

func TestNotReadyNamesWhatItWaitsFor(t *testing.T) {
	tests := []struct {
		last *ctl.Status
		want string
	}{
		{nil, "the appliance did not become ready within 1m30s (its control channel never answered)"},
		{&ctl.Status{}, "the appliance did not become ready within 1m30s"},
		{
			&ctl.Status{Waiting: []string{"httpd: running, not ready yet", "network: eth0 is not operationally up yet (operstate down)"}},
			"the appliance did not become ready within 1m30s; still waiting for:\n" +
				"  httpd: running, not ready yet\n" +
				"  network: eth0 is not operationally up yet (operstate down)",
		},
	}
	for _, tt := range tests {
		if got := notReady(90*time.Second, tt.last).Error(); got != tt.want {
			t.Errorf("notReady(90s, %+v) = %q, want %q", tt.last, got, tt.want)
		}
	}
}
