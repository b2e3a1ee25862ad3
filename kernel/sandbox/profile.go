package sandbox

// Profile is the seccomp allow-list of one kind of component.
type Profile struct {
	Name string
}

// The profiles, one per kind of component.
var (
	Store     = Profile{Name: "store"}
	Driver    = Profile{Name: "driver"}
	IP        = Profile{Name: "ip"}
	Transport = Profile{Name: "transport"} // udp, tcp
	Syscall   = Profile{Name: "syscall"}
	App       = Profile{Name: "app"}
)

func (p Profile) install() error { return nil }
