package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// `make bench` runs several benchmarks, one `go test -bench` at a time, into
// one report. Each writes its own section of the markdown file, between a
// line "<!-- begin NAME -->" and a line "<!-- end NAME -->", and leaves the
// others as the last run of theirs left them.

func beginMark(name string) string { return "<!-- begin " + name + " -->\n" }
func endMark(name string) string   { return "<!-- end " + name + " -->\n" }

// WriteSection replaces the section called name of the markdown file at
// path with body, or appends it if the file has no such section, creating
// the file and its directory if needed. name must not contain "-->" or a
// newline.
func WriteSection(path, name string, body []byte) error {
	if name == "" || strings.Contains(name, "-->") || strings.ContainsRune(name, '\n') {
		return fmt.Errorf("report: bad section name %q", name)
	}
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var sec bytes.Buffer
	sec.WriteString(beginMark(name))
	sec.Write(body)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		sec.WriteByte('\n')
	}
	sec.WriteString(endMark(name))

	var out []byte
	b, e := bytes.Index(old, []byte(beginMark(name))), bytes.Index(old, []byte(endMark(name)))
	switch {
	case b >= 0 && e > b:
		out = append(append(append(out, old[:b]...), sec.Bytes()...), old[e+len(endMark(name)):]...)
	case len(old) == 0:
		out = sec.Bytes()
	default:
		out = append(out, old...)
		if !bytes.HasSuffix(out, []byte("\n")) {
			out = append(out, '\n')
		}
		out = append(append(out, '\n'), sec.Bytes()...)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}
