package exitcode

import (
	"errors"
	"fmt"
	"testing"

	"keepnet/kernel/channel"
)

func TestOf(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, OK},
		{errors.New("store: dial: no such file"), Failure},
		{fmt.Errorf("ip: loop: %w", channel.ErrCorrupt), BrokenChannel},
		{fmt.Errorf("tcp: %w", channel.ErrProtocol), BrokenChannel},
		{fmt.Errorf("ip: -addr: %w", ErrConfig), Config},
	}
	for _, tt := range tests {
		if got := Of(tt.err); got != tt.want {
			t.Errorf("Of(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	for code, want := range map[int]string{
		BrokenChannel: "exit status 3 (broken channel)",
		Config:        "exit status 78 (configuration error)",
		Failure:       "exit status 1",
		9:             "exit status 9",
	} {
		if got := Describe(code); got != want {
			t.Errorf("Describe(%d) = %q, want %q", code, got, want)
		}
	}
}
