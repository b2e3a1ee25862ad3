package sitelist

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// testList: udp links channel and udp; tcp links channel and tcp.
func testList() *List {
	return &List{
		Components: map[string][]string{
			"udp": {"keepnet/kernel/channel", "keepnet/servers/udp"},
			"tcp": {"keepnet/kernel/channel", "keepnet/servers/tcp"},
		},
		Sites: []Site{
			{ID: 1, Type: TypePanic, Package: "keepnet/kernel/channel", File: "kernel/channel/channel.go", Line: 10},
			{ID: 2, Type: TypeCond, Package: "keepnet/kernel/channel", File: "kernel/channel/channel.go", Line: 12},
			{ID: 3, Type: TypeCond, Package: "keepnet/servers/udp", File: "servers/udp/udp.go", Line: 30},
			{ID: 4, Type: TypeCond, Package: "keepnet/servers/udp", File: "servers/udp/udp.go", Line: 31},
			{ID: 5, Type: TypeCond, Package: "keepnet/servers/udp", File: "servers/udp/udp.go", Line: 32},
			{ID: 6, Type: TypeDrop, Package: "keepnet/servers/tcp", File: "servers/tcp/tcp.go", Line: 40},
		},
	}
}

func TestCheck(t *testing.T) {
	l := testList()
	for _, tt := range []struct {
		binary string
		id     uint32
		want   error // nil: site id
	}{
		{"udp", 3, nil},
		{"udp", 1, nil}, // kernel/channel is in every component
		{"tcp", 1, nil},
		{"tcp", 3, ErrNotInComponent},
		{"udp", 6, ErrNotInComponent},
		{"udp", 7, ErrUnknownSite},
		{"udp", 0, ErrUnknownSite},
		{"pf", 1, ErrUnknownComponent},
	} {
		s, err := l.Check(tt.binary, tt.id)
		if !errors.Is(err, tt.want) || tt.want == nil && s.ID != tt.id {
			t.Errorf("Check(%s, %d) = site %d, %v; want site %d, %v", tt.binary, tt.id, s.ID, err, tt.id, tt.want)
		}
	}
}

// Choose picks a site of the type in the component, the same one for the
// same seed, and over many seeds every one of them.
func TestChoose(t *testing.T) {
	l := testList()
	seen := map[uint32]bool{}
	for seed := range uint64(64) {
		s, err := l.Choose("udp", TypeCond, seed)
		if err != nil {
			t.Fatal(err)
		}
		if s.Type != TypeCond || (s.ID < 2 || s.ID > 5) {
			t.Fatalf("Choose(udp, cond, %d) = %+v, want a cond site udp links (2 to 5)", seed, s)
		}
		if again, _ := l.Choose("udp", TypeCond, seed); again != s {
			t.Fatalf("Choose(udp, cond, %d) = site %d, then site %d", seed, s.ID, again.ID)
		}
		seen[s.ID] = true
	}
	if len(seen) != 4 {
		t.Errorf("64 seeds chose sites %v, want each of 2, 3, 4, 5", seen)
	}
	for _, tt := range []struct {
		binary string
		typ    Type
		want   error
	}{
		{"udp", TypeDrop, ErrNoSiteOfType},
		{"tcp", TypeDrop, nil},
		{"pf", TypeCond, ErrUnknownComponent},
	} {
		if _, err := l.Choose(tt.binary, tt.typ, 1); !errors.Is(err, tt.want) {
			t.Errorf("Choose(%s, %s) error = %v, want %v", tt.binary, tt.typ, err, tt.want)
		}
	}
}

func TestParseType(t *testing.T) {
	for _, typ := range Types {
		if got, err := ParseType(string(typ)); got != typ || err != nil {
			t.Errorf("ParseType(%q) = %q, %v", typ, got, err)
		}
	}
	if _, err := ParseType("bitrot"); !errors.Is(err, ErrUnknownType) {
		t.Errorf("ParseType(bitrot) error = %v, want ErrUnknownType", err)
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(filepath.Join(dir, "none.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read of a missing list = %v, want fs.ErrNotExist", err)
	}
	p := filepath.Join(dir, "sites.json")
	os.WriteFile(p, []byte(`{"components":{"udp":["keepnet/servers/udp"]},"sites":[{"id":1,"type":"drop","package":"keepnet/servers/udp","file":"servers/udp/udp.go","line":7}]}`), 0o644)
	l, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := l.Check("udp", 1); err != nil || s.Where() != "servers/udp/udp.go:7" {
		t.Errorf("Check(udp, 1) = %+v (%s), %v", s, s.Where(), err)
	}
	os.WriteFile(p, []byte(`{"sites":`), 0o644)
	if _, err := Read(p); err == nil {
		t.Error("Read of a truncated list succeeded")
	}
}
