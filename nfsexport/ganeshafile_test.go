package nfsexport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestGaneshaFileRender(t *testing.T) {
	blocks := []ganeshaBlock{
		{ID: 1001, Path: "/srv/nodes/C0A80103", Client: netip.MustParseAddr("192.168.1.3")},
		{ID: 1000, Path: "/srv/nodes/C0A80102", Client: netip.MustParseAddr("192.168.1.2")},
	}
	got := string(renderGaneshaFile("/etc/ganesha/pxebootfs.conf", slices.Clone(blocks)))
	if !strings.Contains(got, "\n#   %include \"/etc/ganesha/pxebootfs.conf\"\n") {
		t.Errorf("header does not show the %%include line:\n%s", got)
	}
	want := `
EXPORT {
	Export_Id = 1000;
	Path = "/srv/nodes/C0A80102";
	Pseudo = "/srv/nodes/C0A80102";
	Filesystem_Id = 1000.0;
	Protocols = 3, 4;
	Access_Type = None;
	Squash = No_Root_Squash;
	FSAL {
		Name = VFS;
	}
	CLIENT {
		Clients = 192.168.1.2;
		Access_Type = RW;
		Squash = No_Root_Squash;
	}
}
`
	if !strings.Contains(got, want) {
		t.Errorf("rendered file lacks the block for 1000:\n%s\nwant:%s", got, want)
	}
	if i, j := strings.Index(got, "Export_Id = 1000;"), strings.Index(got, "Export_Id = 1001;"); i < 0 || j < i {
		t.Errorf("blocks are not sorted by Export_Id:\n%s", got)
	}

	parsed, err := parseGaneshaFile([]byte(got))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(blocks, func(a, b ganeshaBlock) int { return int(a.ID) - int(b.ID) })
	if !slices.Equal(parsed, blocks) {
		t.Errorf("parsed %v, want %v", parsed, blocks)
	}
	if b, err := parseGaneshaFile(renderGaneshaFile("/x.conf", nil)); err != nil || len(b) != 0 {
		t.Errorf("empty file parses as %v, %v", b, err)
	}
}

func TestGaneshaFileParse(t *testing.T) {
	block := func(body string) string { return "# comment\n\nEXPORT {\n" + body + "}\n" }
	good := "Export_Id = 7;\nPath = \"/srv/n/a\";\nCLIENT {\n Clients = 10.0.0.7;\n}\n"
	tests := []struct {
		name    string
		data    string
		want    []ganeshaBlock
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"comments only", "# a\n\n  # b\n", nil, ""},
		{"block", block(good), []ganeshaBlock{{7, "/srv/n/a", netip.MustParseAddr("10.0.0.7")}}, ""},
		{"case and spacing", "export{\n  EXPORT_ID=7 ;\n  path = /srv/n/a;\n  Client {\n    clients=10.0.0.7;\n  }\n}\n", []ganeshaBlock{{7, "/srv/n/a", netip.MustParseAddr("10.0.0.7")}}, ""},
		{"unknown settings inside a block are skipped", block("Tag = x;\nFSAL {\nName = VFS;\nFoo = 1;\n}\n" + good), []ganeshaBlock{{7, "/srv/n/a", netip.MustParseAddr("10.0.0.7")}}, ""},
		{"setting outside a block", "NFS_CORE_PARAM = 1;\n", nil, "outside an EXPORT block"},
		{"other block", "NFS_CORE_PARAM {\n}\n", nil, "outside an EXPORT block"},
		{"include", "%include \"/etc/x\"\n", nil, "outside an EXPORT block"},
		{"no id", block("Path = \"/srv/n/a\";\nCLIENT {\nClients = 10.0.0.7;\n}\n"), nil, "without Export_Id"},
		{"id too big", block("Export_Id = 65536;\n" + good[len("Export_Id = 7;\n"):]), nil, "Export_Id"},
		{"repeated id", block("Export_Id = 8;\n" + good), nil, "repeated Export_Id"},
		{"no path", block("Export_Id = 7;\nCLIENT {\nClients = 10.0.0.7;\n}\n"), nil, "without Path"},
		{"bad path", block("Export_Id = 7;\nPath = \"/srv/a b\";\n"), nil, "Path"},
		{"no client", block("Export_Id = 7;\nPath = \"/srv/n/a\";\n"), nil, "one CLIENT block"},
		{"two clients", block(good + "CLIENT {\nClients = 10.0.0.8;\n}\n"), nil, "one"},
		{"client list", block("Export_Id = 7;\nPath = \"/srv/n/a\";\nCLIENT {\nClients = 10.0.0.7, 10.0.0.8;\n}\n"), nil, "not one IPv4 address"},
		{"wildcard client", block("Export_Id = 7;\nPath = \"/srv/n/a\";\nCLIENT {\nClients = *;\n}\n"), nil, "not one IPv4 address"},
		{"not key value", block("Export_Id 7;\n"), nil, "KEY = VALUE"},
		{"unclosed", "EXPORT {\n" + good, nil, "not closed"},
		{"unbalanced", "}\n", nil, "unbalanced"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGaneshaFile([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errNotOurFile) {
					t.Fatalf("parse = %v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parse = %v, want %v", got, tt.want)
			}
		})
	}
}

// A file pxebootfs cannot read back is never overwritten: the admin's
// blocks would be lost.
func TestGaneshaFileEditedByHand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pxebootfs.conf")
	hand := "EXPORT {\n Export_Id = 9; Path = /srv/x; Pseudo = /srv/x;\n}\n"
	if err := os.WriteFile(file, []byte(hand), 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := NewGanesha(GaneshaOptions{ConfigFile: file, Bus: "unix:path=/nonexistent/bus"})
	if err != nil {
		t.Fatal(err)
	}
	err = g.editFile(func(b []ganeshaBlock) ([]ganeshaBlock, error) { return b, nil })
	if !errors.Is(err, errNotOurFile) || !strings.Contains(err.Error(), file) {
		t.Errorf("editFile = %v, want an error naming %s", err, file)
	}
	if err := g.Init(context.Background()); !errors.Is(err, errNotOurFile) {
		t.Errorf("Init = %v, want it to refuse the file", err)
	}
	if data, _ := os.ReadFile(file); string(data) != hand {
		t.Errorf("file was changed:\n%s", data)
	}
}

// TestGaneshaFileReplacedOutside: the parsed blocks are reused only while
// the file holds what was last read or written; a file replaced from
// outside (restored from a backup) is read again, and a broken one refused.
func TestGaneshaFileReplacedOutside(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pxebootfs.conf")
	g, err := NewGanesha(GaneshaOptions{ConfigFile: file, Bus: "unix:path=/nonexistent/bus"})
	if err != nil {
		t.Fatal(err)
	}
	block := func(id uint16) ganeshaBlock {
		return ganeshaBlock{ID: id, Path: fmt.Sprintf("/srv/nodes/%d", id), Client: netip.AddrFrom4([4]byte{10, 0, 0, byte(id)})}
	}
	add := func(id uint16) error {
		return g.editFile(func(b []ganeshaBlock) ([]ganeshaBlock, error) { return append(b, block(id)), nil })
	}
	ids := func() []uint16 {
		t.Helper()
		b, err := g.fileBlocks()
		if err != nil {
			t.Fatal(err)
		}
		var out []uint16
		for _, x := range b {
			out = append(out, x.ID)
		}
		return out
	}
	for _, id := range []uint16{1, 2} {
		if err := add(id); err != nil {
			t.Fatal(err)
		}
	}
	if got := ids(); !slices.Equal(got, []uint16{1, 2}) {
		t.Fatalf("blocks %v, want [1 2]", got)
	}
	if err := os.WriteFile(file, renderGaneshaFile(file, []ganeshaBlock{block(7)}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := add(3); err != nil {
		t.Fatal(err)
	}
	if got := ids(); !slices.Equal(got, []uint16{3, 7}) {
		t.Errorf("after the file was replaced: blocks %v, want [3 7]", got)
	}
	if err := os.WriteFile(file, []byte("EXPORT { Export_Id = 9; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := add(4); !errors.Is(err, errNotOurFile) {
		t.Errorf("edit of a broken file = %v, want errNotOurFile", err)
	}
}

// Init creates the managed file, even when Ganesha is not running.
func TestGaneshaInitCreatesFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ganesha", "pxebootfs.conf")
	g, err := NewGanesha(GaneshaOptions{ConfigFile: file, Bus: "unix:path=" + filepath.Join(dir, "no-bus")})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := g.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := parseGaneshaFile(data); err != nil || len(b) != 0 || !strings.Contains(string(data), g.IncludeLine()) {
		t.Errorf("new file %q parses as %v, %v; want no blocks and the %%include line", data, b, err)
	}
}

func TestNewGanesha(t *testing.T) {
	tests := []struct {
		name    string
		o       GaneshaOptions
		wantErr string
	}{
		{"relative file", GaneshaOptions{ConfigFile: "ganesha/pxebootfs.conf"}, "not absolute"},
		{"unclean file", GaneshaOptions{ConfigFile: "/etc/ganesha/../pxebootfs.conf"}, "not clean"},
		{"quote in file", GaneshaOptions{ConfigFile: `/etc/ganesha/"x".conf`}, "character"},
		{"space in bus", GaneshaOptions{Bus: "unix:path=/run/a b"}, "whitespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGanesha(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewGanesha = %v, %v; want error containing %q", g, err, tt.wantErr)
			}
		})
	}
	g, err := NewGanesha(GaneshaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g.ConfigFile() != DefaultGaneshaConfig || g.bus != "" || g.Name() != "ganesha" || g.busName() != "system bus" {
		t.Errorf("defaults not filled in: %+v", g)
	}
	if want := `%include "/etc/ganesha/pxebootfs.conf"`; g.IncludeLine() != want {
		t.Errorf("IncludeLine = %q, want %q", g.IncludeLine(), want)
	}
}
