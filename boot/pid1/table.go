package pid1

import "keepnet/boot/supervisor"

// Table is the appliance's component table: what runs, in which order, and
// how it is restarted. The supervisor starts a component once everything in
// its Deps is running.
//
// The network applications run only on the Linux stack for now: keepnet's
// own socket API arrives with its UDP and TCP servers.
func Table(cfg Config) []supervisor.Spec {
	specs := []supervisor.Spec{
		{Name: "store", Path: "/bin/store", Restart: supervisor.Always},
	}
	if cfg.Stack == StackLinux {
		specs = append(specs,
			supervisor.Spec{Name: "httpd", Path: "/bin/httpd", Args: []string{"-stack", cfg.Stack, "-ctl", LocalCtl}, Restart: supervisor.Always},
			supervisor.Spec{Name: "echo", Path: "/bin/echo", Args: []string{"-stack", cfg.Stack}, Restart: supervisor.Always},
		)
	}
	return specs
}
