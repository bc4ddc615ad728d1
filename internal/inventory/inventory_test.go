package inventory

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// TestExample loads testdata/nodes.ini, the example shipped to admins.
func TestExample(t *testing.T) {
	inv, err := Load("../../testdata/nodes.ini")
	if err != nil {
		t.Fatal(err)
	}
	if inv.Len() != 4 {
		t.Fatalf("%d nodes, want 4", inv.Len())
	}
	if n := inv.ByID(node.MustParse("192.168.1.5")); n == nil || !n.Install || n.Template(config.LoaderPXELinux, config.RoleInstall) == nil || n.Provision {
		t.Errorf("install node: %+v", n)
	}
	n := inv.ByMAC(mac("52:54:00:12:34:58"))
	if n == nil || n.Name != "rack1-n03" || n.ID != node.MustParse("192.168.1.3") || n.MAC() != "52:54:00:12:34:57" {
		t.Errorf("by second MAC: %+v", n)
	}
	inst := inv.ByID(node.MustParse("192.168.1.4"))
	if inst == nil || inst.Provision || inst.Template(config.LoaderPXELinux, config.RoleUsual) == nil || inst.Vars["suite"] != "bookworm" {
		t.Fatalf("installer node: %+v", inst)
	}
	b, err := inst.Template(config.LoaderPXELinux, config.RoleUsual).Render(inst.TrialData())
	if err != nil || !strings.Contains(string(b), "debian-installer/bookworm/linux") || !strings.Contains(string(b), "hostname=rack1-n04") {
		t.Errorf("installer render: %q, %v", b, err)
	}
	abs, _ := filepath.Abs("../../testdata/templates/installer.template")
	abs2, _ := filepath.Abs("../../testdata/templates/install.template")
	wantFiles := []string{inv.File(), abs, abs2}
	if !reflect.DeepEqual(inv.Files(), wantFiles) {
		t.Errorf("Files() = %v, want %v", inv.Files(), wantFiles)
	}
	if n := inv.ByID(node.MustParse("192.168.1.2")); n == nil || !n.Provision || n.Hostname != "rack1-n02" || n.Template(config.LoaderPXELinux, config.RoleUsual) != nil {
		t.Errorf("C0A80102: %+v", n)
	}
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "t", "inst.template"), "node {{.Node}} suite {{.Vars.suite}}\n")
	tests := []struct {
		name string
		text string
		want []Host // compared on the fields set here
	}{
		{name: "empty", text: "# nothing yet\n"},
		{name: "hex name gives the ip", text: "[node \"C0A80102\"]\n",
			want: []Host{{Name: "C0A80102", Line: 1, ID: node.MustParse("192.168.1.2"), Provision: true, Vars: map[string]string{}}}},
		{name: "lower-case hex name", text: "[node \"c0a80102\"]\nip = 192.168.1.2\n",
			want: []Host{{Name: "c0a80102", Line: 1, ID: node.MustParse("192.168.1.2"), Provision: true, Vars: map[string]string{}}}},
		{name: "all keys", text: `; comment
[node "n1.rack-1"]
ip = 10.0.0.1
mac = 52:54:00:00:00:01 52-54-00-00-00-02,5254.0000.0003 # three forms
mac: 52:54:00:00:00:04
hostname = n1.rack-1.example
template = t/inst.template
provision = false
var.suite = bookworm
var.Empty =
var.url = http://x/a#b;c
`, want: []Host{{
			Name: "n1.rack-1", Line: 2, ID: node.MustParse("10.0.0.1"),
			MACs:     []net.HardwareAddr{mac("52:54:00:00:00:01"), mac("52:54:00:00:00:02"), mac("52:54:00:00:00:03"), mac("52:54:00:00:00:04")},
			Hostname: "n1.rack-1.example", TemplateFile: filepath.Join(dir, "t", "inst.template"), Provision: false,
			Vars: map[string]string{"suite": "bookworm", "Empty": "", "url": "http://x/a#b;c"},
		}}},
		{name: "same mac twice in one node", text: "[node \"C0A80102\"]\nmac = 52:54:00:00:00:01, 52:54:00:00:00:01\n",
			want: []Host{{Name: "C0A80102", Line: 1, ID: node.MustParse("192.168.1.2"), MACs: []net.HardwareAddr{mac("52:54:00:00:00:01")}, Provision: true, Vars: map[string]string{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Parse(filepath.Join(dir, "nodes.ini"), []byte(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			got := inv.Nodes()
			if len(got) != len(tt.want) {
				t.Fatalf("%d nodes, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				g := *got[i]
				g.own = nil
				if !reflect.DeepEqual(g, w) {
					t.Errorf("node %d:\n got %+v\nwant %+v", i, g, w)
				}
				if own := got[i].Template(config.LoaderPXELinux, config.RoleUsual); (own != nil) != (w.TemplateFile != "") {
					t.Errorf("node %d: Template %v with TemplateFile %q", i, own, w.TemplateFile)
				}
				if inv.ByID(w.ID) != got[i] {
					t.Errorf("ByID(%s) is not node %d", w.ID, i)
				}
				for _, m := range w.MACs {
					if inv.ByMAC(m) != got[i] {
						t.Errorf("ByMAC(%s) is not node %d", m, i)
					}
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "broken.template"), "{{.Node\n")
	testenv.WriteFile(t, filepath.Join(dir, "vars.template"), "<NODE> {{.Vars.suite}}\n")
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		text string
		line int    // wanted Error.Line
		want string // substring of the message
	}{
		{"key outside a section", "ip = 1.2.3.4\n[node \"C0A80102\"]\n", 1, "outside any"},
		{"other section", "[node \"C0A80102\"]\n\n[global]\nx = 1\n", 3, "unexpected section [global]"},
		{"unquoted name", "[node C0A80102]\n", 1, "unexpected section"},
		{"bad node name", "[node \"a b\"]\nip = 1.2.3.4\n", 1, "host-name-like label"},
		{"empty node name", "[node \"\"]\n", 1, "node name"},
		{"duplicate node", "[node \"C0A80102\"]\n\n[node \"C0A80102\"]\n", 3, "first on line 1"},
		{"no ip", "# x\n[node \"n1\"]\nmac = 52:54:00:00:00:01\n", 2, "no ip"},
		{"ip not IPv4", "[node \"n1\"]\nip = ::1\n", 2, "not an IPv4"},
		{"ip mapped IPv6", "[node \"n1\"]\nip = ::ffff:1.2.3.4\n", 2, "not an IPv4"},
		{"ip bad", "[node \"n1\"]\nhostname = n1\nip = 1.2.3\n", 3, "not an IPv4"},
		{"ip mismatches hex name", "[node \"C0A80102\"]\n\nip = 192.168.1.3\n", 3, "does not match"},
		{"ip set twice", "[node \"n1\"]\nip = 1.2.3.4\nip = 1.2.3.5\n", 3, "set 2 times"},
		{"empty ip", "[node \"n1\"]\nip =\n", 2, "empty value"},
		{"bad mac", "[node \"n1\"]\nip = 1.2.3.4\nmac = 52:54:00:00:00:01, zz:54:00:00:00:02\n", 3, `"zz:54:00:00:00:02"`},
		{"long mac", "[node \"n1\"]\nip = 1.2.3.4\nmac = 00:00:00:00:fe:80:00:00\n", 3, "not an Ethernet MAC"},
		{"bad mac in repeated key", "[node \"n1\"]\nip = 1.2.3.4\nmac = 52:54:00:00:00:01\nmac = nope\n", 4, `"nope"`},
		{"bad hostname", "[node \"n1\"]\nip = 1.2.3.4\nhostname = -n1\n", 3, "starts or ends"},
		{"hostname underscore", "[node \"n1\"]\nip = 1.2.3.4\nhostname = n_1\n", 3, "only letters"},
		{"bad provision", "[node \"n1\"]\nip = 1.2.3.4\nprovision = maybe\n", 3, "is not a boolean (true/false, yes/no, on/off, 1/0)"},
		{"unknown key", "[node \"n1\"]\nip = 1.2.3.4\nipaddr = 1.2.3.4\n", 3, "unknown key"},
		// Key names are case-insensitive, as in the config file.
		{"key set twice in two cases", "[node \"n1\"]\nip = 1.2.3.4\nIP = 1.2.3.4\n", 3, "set 2 times"},
		{"bad var name", "[node \"n1\"]\nip = 1.2.3.4\nvar.a-b = x\n", 3, "variable name"},
		{"missing template", "[node \"n1\"]\nip = 1.2.3.4\ntemplate = nope.template\n", 3, "no such file"},
		{"template is a dir", "[node \"n1\"]\nip = 1.2.3.4\ntemplate = adir\n", 3, "not a regular file"},
		{"broken template", "[node \"n1\"]\nip = 1.2.3.4\n\ntemplate = broken.template\n", 4, "broken.template:1"},
		{"template needs a var the node lacks", "[node \"n1\"]\nip = 1.2.3.4\ntemplate = vars.template\n", 3, "suite"},
		{"ip of two nodes", "[node \"C0A80102\"]\n[node \"n2\"]\nip = 192.168.1.2\n", 3, `node "C0A80102"'s (line 1)`},
		{"mac of two nodes", "[node \"n1\"]\nip = 1.2.3.4\nmac = 52:54:00:00:00:01\n[node \"n2\"]\nip = 1.2.3.5\nmac = 52:54:00:00:00:02\nmac = 52:54:00:00:00:01\n", 7, `node "n1"'s (line 1)`},
		{"syntax", "[node \"n1\"\nip = 1.2.3.4\n", 1, "syntax error"},
		{"continuation", "[node \"n1\"]\nip = 1.2.3.4\nhostname = a\\\n", 3, "continuation lines"},
		{"no delimiter", "[node \"n1\"]\nip 1.2.3.4\n", 2, "delimiter not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "nodes.ini")
			_, err := Parse(path, []byte(tt.text))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if e.File != path || e.Line != tt.line {
				t.Errorf("err at %s:%d, want %s:%d: %v", e.File, e.Line, path, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
			if tt.line > 0 && !strings.HasPrefix(err.Error(), path+":") {
				t.Errorf("err = %v, want it to start with %s:LINE", err, path)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.ini")); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.ini") {
		t.Errorf("missing file: %v", err)
	}
}

func TestNilInventory(t *testing.T) {
	var inv *Inventory
	if inv.ByID(node.MustParse("1.2.3.4")) != nil || inv.ByMAC(mac("52:54:00:00:00:01")) != nil || inv.Len() != 0 || inv.Nodes() != nil || inv.Files() != nil || inv.File() != "" {
		t.Error("a nil inventory is not empty")
	}
}

func TestCheckHostname(t *testing.T) {
	for _, tt := range []struct {
		s  string
		ok bool
	}{
		{"n1", true}, {"rack1-n02", true}, {"a.b.c", true}, {"1node", true}, {strings.Repeat("a", 63), true},
		{"", false}, {"-a", false}, {"a-", false}, {"a..b", false}, {"a_b", false}, {"é", false},
		{strings.Repeat("a", 64), false}, {strings.Repeat("a.", 127) + "a", false},
	} {
		t.Run(tt.s, func(t *testing.T) {
			if err := checkHostname(tt.s); (err == nil) != tt.ok {
				t.Errorf("checkHostname(%q) = %v, want ok=%v", tt.s, err, tt.ok)
			}
		})
	}
}

// TestGrubTemplate: a node's own GRUB template is loaded, checked for the
// node, and watched like its pxelinux one.
func TestGrubTemplate(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "uefi.template"), "echo uefi <NODE>\n")
	testenv.WriteFile(t, filepath.Join(dir, "nodes.ini"), "[node \"C0A80102\"]\ngrub_template = uefi.template\n")
	inv, err := Load(filepath.Join(dir, "nodes.ini"))
	if err != nil {
		t.Fatal(err)
	}
	n := inv.ByID(node.MustParse("192.168.1.2"))
	if n == nil || n.Template(config.LoaderGRUB, config.RoleUsual) == nil || n.Template(config.LoaderPXELinux, config.RoleUsual) != nil {
		t.Fatalf("node %+v", n)
	}
	if b, err := n.Template(config.LoaderGRUB, config.RoleUsual).Render(n.TrialData()); err != nil || string(b) != "echo uefi C0A80102\n" {
		t.Errorf("render %q, %v", b, err)
	}
	if !slices.Contains(inv.Files(), filepath.Join(dir, "uefi.template")) {
		t.Errorf("Files() = %v: the GRUB template is not watched", inv.Files())
	}
	testenv.WriteFile(t, filepath.Join(dir, "nodes.ini"), "[node \"C0A80102\"]\ngrub_template = missing.template\n")
	if _, err := Load(filepath.Join(dir, "nodes.ini")); err == nil || !strings.Contains(err.Error(), "grub_template") {
		t.Errorf("missing GRUB template: %v", err)
	}
}

// TestInstallKeys: a node's own install and local templates are loaded and
// checked for the node (a var it lacks is an error naming the key), and
// install is a boolean.
func TestInstallKeys(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "inst.template"), "install <NODE> {{.Vars.suite}}\n")
	testenv.WriteFile(t, filepath.Join(dir, "local.template"), "local <NODE>\n")
	cases := []struct {
		name, ini, wantErr string
		check              func(t *testing.T, n *Host)
	}{
		{"all keys", "install = true\nvar.suite = trixie\ninstall_template = inst.template\nlocal_template = local.template\n" +
			"grub_install_template = inst.template\ngrub_local_template = local.template\n", "", func(t *testing.T, n *Host) {
			if !n.Install || n.Template(config.LoaderPXELinux, config.RoleInstall) == nil || n.Template(config.LoaderPXELinux, config.RoleLocal) == nil || n.Template(config.LoaderGRUB, config.RoleInstall) == nil || n.Template(config.LoaderGRUB, config.RoleLocal) == nil || n.Template(config.LoaderPXELinux, config.RoleUsual) != nil {
				t.Fatalf("node %+v", n)
			}
			if b, err := n.Template(config.LoaderPXELinux, config.RoleInstall).Render(n.TrialData()); err != nil || string(b) != "install C0A80102 trixie\n" {
				t.Errorf("render %q, %v", b, err)
			}
		}},
		{"default", "hostname = n2\n", "", func(t *testing.T, n *Host) {
			if n.Install || n.Template(config.LoaderPXELinux, config.RoleInstall) != nil || n.Template(config.LoaderPXELinux, config.RoleLocal) != nil {
				t.Fatalf("node %+v", n)
			}
		}},
		{"missing var", "install_template = inst.template\n", "install_template", nil},
		{"install not bool", "install = maybe\n", `install: "maybe" is not a boolean`, nil},
		// One boolean rule with the config file: yes/no, on/off as in
		// reset_on_boot = yes.
		{"provision = no, install = yes", "provision = no\ninstall = yes\n", "", func(t *testing.T, n *Host) {
			if n.Provision || !n.Install {
				t.Fatalf("provision %v install %v; want false, true", n.Provision, n.Install)
			}
		}},
		{"provision = On", "provision = On\n", "", func(t *testing.T, n *Host) {
			if !n.Provision {
				t.Fatal("provision = On read as false")
			}
		}},
		{"missing file", "local_template = nope.template\n", "local_template", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			testenv.WriteFile(t, filepath.Join(dir, "nodes.ini"), "[node \"C0A80102\"]\n"+tc.ini)
			inv, err := Load(filepath.Join(dir, "nodes.ini"))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, inv.ByID(node.MustParse("C0A80102")))
		})
	}
}
