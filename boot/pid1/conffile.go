package pid1

import (
	"encoding/base64"
	"fmt"
	"path"
	"strings"
)

// The configuration file (keepnet.conf on a boot image's ESP; images/bootimg
// writes one, every line commented out) says what the kernel command line
// says, for a machine whose command line nobody types: one setting a line,
//
//	# a comment
//	ip=192.168.1.2/24
//	gw=192.168.1.1
//	dns=192.168.1.1
//	hostname=edge1
//	authorized_key=ssh-ed25519 AAAAC3Nza... me@laptop
//
// NAME is a keepnet.* parameter's name without "keepnet." (Config's doc),
// with the same values, plus
//
//	authorized_key=LINE  one authorized_keys line, as is (not base64); one
//	                     setting per key, all of them kept (keepnet.sshkey
//	                     is the command line's way to say the same)
//
// Spaces around NAME and VALUE are dropped; a line that is not NAME=VALUE,
// an unknown name or a bad value is a warning and otherwise ignored, as on
// the command line. keepnet.conf itself is not a setting of the file.
//
// The kernel command line wins: a parameter given there replaces the
// file's setting, and for the settings that repeat (nic, route, and the SSH
// keys) the command line's list replaces the file's whole list.

// repeated are the settings that add to a list rather than replace a value.
var repeated = map[string]bool{"nic": true, "route": true, "sshkey": true}

// confFile is a configuration file, parsed.
type confFile struct {
	settings []setting
	keys     []string // authorized_key lines
	warnings []error
}

// A setting is one NAME=VALUE of the file.
type setting struct {
	line      int
	name, val string
}

// parseConfFile splits a configuration file's text into settings.
func parseConfFile(text string) confFile {
	var f confFile
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		switch {
		case !ok || name == "":
			f.warnings = append(f.warnings, fmt.Errorf("configuration file line %d: want NAME=VALUE, got %q", i+1, line))
		case name == "conf":
			f.warnings = append(f.warnings, fmt.Errorf("configuration file line %d: conf is the kernel command line's (where this file is)", i+1))
		case name == "authorized_key":
			if val == "" || strings.ContainsAny(val, "\r") {
				f.warnings = append(f.warnings, fmt.Errorf("configuration file line %d: want an authorized_keys line", i+1))
				continue
			}
			f.keys = append(f.keys, val)
		default:
			f.settings = append(f.settings, setting{i + 1, name, val})
		}
	}
	return f
}

// apply sets the file's settings on c.
func (f confFile) apply(c *Config) (warnings []error) {
	warnings = append(warnings, f.warnings...)
	for _, s := range f.settings {
		if err := c.set(s.name, s.val); err != nil {
			warnings = append(warnings, fmt.Errorf("configuration file line %d %q: %w", s.line, s.name+"="+s.val, err))
		}
	}
	if len(f.keys) > 0 {
		c.SSHKey = base64.StdEncoding.EncodeToString([]byte(strings.Join(f.keys, "\n") + "\n"))
	}
	return warnings
}

// ConfFileOf is the configuration file a kernel command line names
// (keepnet.conf=PATH), or "".
func ConfFileOf(cmdline string) string {
	var p string
	for _, field := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(field, "keepnet.conf="); ok {
			p = v
		}
	}
	return p
}

// checkConfPath is keepnet.conf's check: an absolute path on the file
// system that holds it.
func checkConfPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("want an absolute path like /keepnet/keepnet.conf")
	}
	return nil
}
