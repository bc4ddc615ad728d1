package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testLayout is a temp dir with everything a config may point at:
//
//	tmpl            template
//	ethers          ethers file
//	static/         static_dir
//	root/           golden root
//	afile           a regular file where a directory is expected
//	fifo            a named pipe
//	link -> root    a symlink, to hide nesting behind
type testLayout struct {
	dir string
}

func newLayout(t *testing.T) testLayout {
	t.Helper()
	d := t.TempDir()
	for _, f := range []string{"tmpl", "ethers", "afile"} {
		if err := os.WriteFile(filepath.Join(d, f), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"static", "root"} {
		if err := os.Mkdir(filepath.Join(d, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(d, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("root", filepath.Join(d, "link")); err != nil {
		t.Fatal(err)
	}
	return testLayout{dir: d}
}

func (l testLayout) path(rel string) string { return filepath.Join(l.dir, rel) }

// write stores body as the layout's config file, replacing @ with the
// layout's directory.
func (l testLayout) write(t *testing.T, body string) string {
	t.Helper()
	p := l.path("pxebootfs.cfg")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(body, "@", l.dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = "[PXEBOOTFS]\npxe_template: tmpl\n"

// full is a valid full-mode config in the original tool's syntax; state_dir
// is set so the test does not depend on the host's /var/lib/pxebootfs.
const full = `[PXEBOOTFS]
pxe_template: tmpl
node_dir: nodes
root_dir: root
overlay_dir: overlay
start_fsid: 100
state_dir = state
`

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		body string
		key  string // wanted Error.Key
		want string // substring of the message
	}{
		{"empty file", "", "", "no [PXEBOOTFS] section"},
		{"only comments", "# nothing\n; here\n", "", "no [PXEBOOTFS] section"},
		{"key before header", "pxe_template: tmpl\n[PXEBOOTFS]\n", "", `"pxe_template" is outside the [PXEBOOTFS] section`},
		{"other section", minimal + "[extra]\na = b\n", "", "unexpected section [extra]"},
		{"explicit DEFAULT with keys", minimal + "[DEFAULT]\na = b\n", "", "unexpected section [DEFAULT]"},
		{"wrong case section", "[pxebootfs]\npxe_template: tmpl\n", "", "case-sensitive"},
		{"section twice", minimal + "[PXEBOOTFS]\nstatic_dir: static\n", "", "more than once"},
		{"syntax error", minimal + "this line has no delimiter\n", "", "syntax error"},
		{"unknown key with suggestion", minimal + "statc_dir = static\n", "statc_dir", `unknown key; did you mean "static_dir"?`},
		{"unknown key far from any", minimal + "frobnicate = 1\n", "frobnicate", "unknown key"},
		{"near miss of reset_guard", minimal + "reset_guards = 1\n", "reset_guards", `unknown key; did you mean "reset_guard"?`},
		{"duplicate key", minimal + "pxe_template = tmpl\n", "pxe_template", "set 2 times"},
		{"duplicate key other syntax", minimal + "allow = 10.0.0.0/8\nallow: 10.0.0.0/8\n", "allow", "set 2 times"},

		{"missing pxe_template", "[PXEBOOTFS]\nstatic_dir = static\n", "pxe_template", "required key is missing"},
		{"empty pxe_template", "[PXEBOOTFS]\npxe_template =\n", "pxe_template", "required key is missing"},
		{"pxe_template missing file", "[PXEBOOTFS]\npxe_template: nope\n", "pxe_template", "no such file or directory"},
		{"pxe_template is a dir", "[PXEBOOTFS]\npxe_template: static\n", "pxe_template", "is not a regular file (a directory)"},
		{"pxe_template is a fifo", "[PXEBOOTFS]\npxe_template: fifo\n", "pxe_template", "named pipe"},

		{"ethers missing file", minimal + "ethers = nope\n", "ethers", "no such file or directory"},
		{"ethers is a dir", minimal + "ethers = static\n", "ethers", "not a regular file"},
		{"static_dir missing", minimal + "static_dir = nope\n", "static_dir", "no such file or directory"},
		{"static_dir is a file", minimal + "static_dir = afile\n", "static_dir", "is not a directory (a regular file)"},

		{"allow garbage item", minimal + "allow = 10.0.0.0/8, bogus\n", "allow", `"bogus"`},
		{"allow bad prefix length", minimal + "allow = 10.0.0.0/33\n", "allow", `"10.0.0.0/33"`},
		{"allow IPv6 prefix", minimal + "allow = fe80::/10\n", "allow", `"fe80::/10" is not IPv4`},
		{"allow IPv6 address", minimal + "allow = ::1\n", "allow", "is not IPv4"},
		{"allow IPv4-mapped", minimal + "allow = ::ffff:10.0.0.1\n", "allow", "is not IPv4"},
		{"allow host bits", minimal + "allow = 10.0.0.1/8\n", "allow", "did you mean 10.0.0.0/8?"},
		{"allow empty item", minimal + "allow = 10.0.0.0/8,,10.1.0.0/16\n", "allow", "empty item"},
		{"allow space separated", minimal + "allow = 10.0.0.0/8 10.1.0.0/16\n", "allow", `"10.0.0.0/8 10.1.0.0/16"`},

		{"start_fsid not a number", strings.Replace(full, "start_fsid: 100", "start_fsid: many", 1), "start_fsid", `"many" is not an integer`},
		{"start_fsid zero", strings.Replace(full, "start_fsid: 100", "start_fsid: 0", 1), "start_fsid", "NFSv4 root"},
		{"start_fsid negative", strings.Replace(full, "start_fsid: 100", "start_fsid: -1", 1), "start_fsid", "not an integer"},
		{"start_fsid too big", strings.Replace(full, "start_fsid: 100", "start_fsid: 4294967296", 1), "start_fsid", "not an integer from 1 to 4294967295"},
		{"fsid range overflows", strings.Replace(full, "start_fsid: 100", "start_fsid: 4294967295\nmax_nodes = 2", 1), "start_fsid", "runs past"},

		{"only node_dir", minimal + "node_dir: nodes\n", "overlay_dir", "missing: overlay_dir, start_fsid (set: node_dir)"},
		{"all but start_fsid", strings.Replace(full, "start_fsid: 100\n", "", 1), "start_fsid", "missing: start_fsid"},
		{"root_dir missing", strings.Replace(full, "root_dir: root", "root_dir: nope", 1), "root_dir", "no such file or directory"},
		{"root_dir is a file", strings.Replace(full, "root_dir: root", "root_dir: afile", 1), "root_dir", "not a directory"},
		{"node_dir is a file", strings.Replace(full, "node_dir: nodes", "node_dir: afile", 1), "node_dir", "exists and is not a directory"},
		{"overlay_dir is a file", strings.Replace(full, "overlay_dir: overlay", "overlay_dir: afile", 1), "overlay_dir", "exists and is not a directory"},
		{"state_dir is a file", strings.Replace(full, "state_dir = state", "state_dir = afile", 1), "state_dir", "exists and is not a directory"},

		{"overlay_dir with an equals sign", strings.Replace(full, "overlay_dir: overlay", "overlay_dir: ov=1", 1), "overlay_dir", "mount option strings use as a separator"},
		{"node_dir with a comma", strings.Replace(full, "node_dir: nodes", "node_dir: n,1", 1), "node_dir", `contains ','`},
		{"node_dir inside root_dir", strings.Replace(full, "node_dir: nodes", "node_dir: root/nodes", 1), "node_dir", "lies inside root_dir's tree"},
		{"root_dir inside node_dir", strings.Replace(full, "node_dir: nodes", "node_dir: .", 1), "root_dir", "lies inside node_dir's tree"},
		{"node_dir equals overlay_dir", strings.Replace(full, "overlay_dir: overlay", "overlay_dir: nodes/", 1), "overlay_dir", "same directory as node_dir"},
		{"state_dir inside overlay_dir", strings.Replace(full, "state_dir = state", "state_dir = overlay/state", 1), "state_dir", "lies inside overlay_dir's tree"},
		{"node_dir inside root_dir via symlink", strings.Replace(full, "node_dir: nodes", "node_dir: link/nodes", 1), "node_dir", "lies inside root_dir's tree"},
		{"node_dir equals root_dir via symlink", strings.Replace(full, "node_dir: nodes", "node_dir: @/link", 1), "root_dir", "same directory as node_dir"},

		{"max_nodes zero", minimal + "max_nodes = 0\n", "max_nodes", "not a positive integer"},
		{"max_nodes negative", minimal + "max_nodes = -5\n", "max_nodes", "not a positive integer"},
		{"max_nodes not a number", minimal + "max_nodes = lots\n", "max_nodes", `"lots"`},
		{"overlay_type unknown", minimal + "overlay_type = zfs\n", "overlay_type", `"zfs" is not one of overlayfs, aufs`},
		{"overlay_type wrong case", minimal + "overlay_type = OverlayFS\n", "overlay_type", "is not one of"},
		{"export unknown", minimal + "export = nfs\n", "export", `"nfs" is not one of exportfs, ganesha, none`},
		{"ganesha fsid range", strings.Replace(full, "start_fsid: 100", "start_fsid: 65000", 1) + "export = ganesha\n", "start_fsid", "Ganesha Export_Id, at most 65535"},
		{"ganesha_config odd character", minimal + "ganesha_config = /etc/ganesha/a\"b.conf\n", "ganesha_config", "has character"},
		{"ganesha_config is a dir", minimal + "ganesha_config = static\n", "ganesha_config", "not a regular file (a directory)"},
		{"ganesha_dbus not an address", minimal + "ganesha_dbus = /run/dbus/system_bus_socket\n", "ganesha_dbus", "is not a D-Bus address"},
		{"ganesha_dbus whitespace", minimal + "ganesha_dbus = unix:path=/a b\n", "ganesha_dbus", "is not a D-Bus address"},
		{"overlay_options lowerdir", minimal + "overlay_options = index=on,lowerdir=/x\n", "overlay_options", `"lowerdir=/x"`},
		{"overlay_options lowerdir+", minimal + "overlay_options = lowerdir+=/x\n", "overlay_options", "layer directories"},
		{"overlay_options upperdir", minimal + "overlay_options = upperdir=/x\n", "overlay_options", "layer directories"},
		{"overlay_options workdir", minimal + "overlay_options = workdir=/x\n", "overlay_options", "layer directories"},
		{"overlay_options aufs br", minimal + "overlay_options = br:/x=rw\n", "overlay_options", "layer directories"},
		{"overlay_options aufs br=", minimal + "overlay_options = br=/x=rw\n", "overlay_options", "layer directories"},
		{"overlay_options empty item", minimal + "overlay_options = index=on,,xino=off\n", "overlay_options", "empty option"},
		{"overlay_options whitespace", minimal + "overlay_options = index = on\n", "overlay_options", "contains whitespace"},
		// overlay's own rules, applied at load rather than at the first mount.
		{"overlay_options index=off", minimal + "overlay_options = index=off\n", "overlay_options", "overrides index"},
		{"overlay_options nfs_export=off", minimal + "overlay_options = redirect_dir=on,nfs_export=off\n", "overlay_options", "overrides nfs_export"},
		{"export_options fsid", minimal + "export_options = rw,fsid=7\n", "export_options", `"fsid=7"`},
		{"export_options bare fsid", minimal + "export_options = rw,FSID\n", "export_options", "fsid"},
		{"export_options whitespace", minimal + "export_options = rw,no_root_squash sync\n", "export_options", "contains whitespace"},
		{"export_options trailing comma", minimal + "export_options = rw,\n", "export_options", "empty option"},

		{"reset_guard negative", minimal + "reset_guard = -1\n", "reset_guard", `"-1" is not a number of seconds`},
		{"reset_guard with unit", minimal + "reset_guard = 5m\n", "reset_guard", `"5m" is not a number of seconds`},
		{"reset_on_boot not a boolean", minimal + "reset_on_boot = sometimes\n", "reset_on_boot", `"sometimes" is not a boolean`},
		{"metrics_listen no port", minimal + "metrics_listen = 127.0.0.1\n", "metrics_listen", "is not host:port"},
		{"metrics_listen bad port", minimal + "metrics_listen = 127.0.0.1:http\n", "metrics_listen", `port "http" is not a number`},
		{"metrics_listen port too big", minimal + "metrics_listen = 127.0.0.1:65536\n", "metrics_listen", "not a number from 0 to 65535"},
		{"metrics_listen hostname", minimal + "metrics_listen = metrics.example:9123\n", "metrics_listen", `host "metrics.example" is not an IP address`},
		{"callback_listen without url", minimal + "callback_listen = :8770\n", "callback_listen", "needs callback_url"},
		{"callback_url not http", minimal + "callback_url = ftp://192.0.2.1/\n", "callback_url", "is not an http:// or https:// URL"},
		{"callback_url with query", minimal + "callback_url = http://192.0.2.1:8770/?x=1\n", "callback_url", "no user, query or fragment"},
		{"callback_url relative", minimal + "callback_url = 192.0.2.1:8770\n", "callback_url", "is not an http"},
		{"install_max_boots zero", minimal + "install_max_boots = 0\n", "install_max_boots", "not a positive integer"},
		{"install_template missing", minimal + "install_template = /nonexistent/install.template\n", "install_template", "not a readable file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			path := l.write(t, tt.body)
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded (%+v), want error containing %q", c, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *config.Error", err, err)
			}
			if ce.Key != tt.key {
				t.Errorf("Key = %q, want %q (error: %v)", ce.Key, tt.key, err)
			}
			if ce.File != path {
				t.Errorf("File = %q, want %q", ce.File, path)
			}
			msg := err.Error()
			checkPlace(t, ce, path, tt.body)
			if tt.key != "" && !strings.Contains(msg, "[PXEBOOTFS] "+tt.key+": ") {
				t.Errorf("message %q does not name key %s", msg, tt.key)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("message %q does not contain %q", msg, tt.want)
			}
		})
	}
}

// checkPlace: the message starts with the file (and a line when it has one),
// and an error about a key written in the file names a line that sets it.
func checkPlace(t *testing.T, ce *Error, path, body string) {
	t.Helper()
	msg := ce.Error()
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(path) + `(:[0-9]+)?: `).MatchString(msg) {
		t.Errorf("message %q does not start with the file path (and line)", msg)
	}
	lines := strings.Split(body, "\n")
	if ce.Key == "" || !regexp.MustCompile(`(?im)^\s*`+regexp.QuoteMeta(ce.Key)+`\s*[=:]`).MatchString(body) {
		return
	}
	if ce.Line < 1 || ce.Line > len(lines) || !strings.Contains(strings.ToLower(lines[ce.Line-1]), ce.Key) {
		t.Errorf("message %q: line %d does not set %s", msg, ce.Line, ce.Key)
	}
}

func TestOSErrorIsWrapped(t *testing.T) {
	l := newLayout(t)
	_, err := Load(l.write(t, "[PXEBOOTFS]\npxe_template: nope\n"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v does not wrap fs.ErrNotExist", err)
	}
}

func TestLoadUnreadableConfig(t *testing.T) {
	tests := []struct {
		name string
		path func(l testLayout) string
	}{
		{"missing", func(l testLayout) string { return l.path("nope.cfg") }},
		{"directory", func(l testLayout) string { return l.path("static") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.path(newLayout(t))
			_, err := Load(p)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			if ce.File != p || ce.Key != "" || ce.Err == nil {
				t.Errorf("got %+v, want File %q, no key, an os error", ce, p)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("message %q does not name the file", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, l testLayout, c *Config)
	}{
		{"colon syntax", "[PXEBOOTFS]\npxe_template: tmpl\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "PXETemplate", c.PXETemplate, l.path("tmpl"))
		}},
		{"equals syntax", "[PXEBOOTFS]\npxe_template = tmpl\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "PXETemplate", c.PXETemplate, l.path("tmpl"))
		}},
		{"no spaces", "[PXEBOOTFS]\npxe_template=tmpl\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "PXETemplate", c.PXETemplate, l.path("tmpl"))
		}},
		{"keys are case-insensitive", "[PXEBOOTFS]\nPXE_Template: tmpl\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "PXETemplate", c.PXETemplate, l.path("tmpl"))
		}},
		{"absolute path", "[PXEBOOTFS]\npxe_template: @/tmpl\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "PXETemplate", c.PXETemplate, l.path("tmpl"))
		}},
		{"relative paths are cleaned", "[PXEBOOTFS]\npxe_template: ./static/../tmpl\nstatic_dir = static/\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "PXETemplate", c.PXETemplate, l.path("tmpl"))
			eq(t, "StaticDir", c.StaticDir, l.path("static"))
		}},
		{"values are trimmed, inline comment dropped", "[PXEBOOTFS]\n  pxe_template =   tmpl   # the template\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "PXETemplate", c.PXETemplate, l.path("tmpl"))
		}},
		{"empty optional values are unset", minimal + "static_dir =\nethers:\nallow =\nexport_options =\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "StaticDir", c.StaticDir, "")
			eq(t, "Ethers", c.Ethers, "")
			if c.Allow != nil {
				t.Errorf("Allow = %v, want nil", c.Allow)
			}
			eq(t, "ExportOptions", c.ExportOptions, DefaultExportOptions)
		}},
		{"defaults", minimal, func(t *testing.T, l testLayout, c *Config) {
			if c.FullMode() {
				t.Error("FullMode() = true for a config-only file")
			}
			eq(t, "File", c.File, l.path("pxebootfs.cfg"))
			eq(t, "StaticDir", c.StaticDir, "")
			eq(t, "Ethers", c.Ethers, "")
			eq(t, "NodeDir", c.NodeDir, "")
			eq(t, "StateDir", c.StateDir, DefaultStateDir)
			eq(t, "MaxNodes", c.MaxNodes, DefaultMaxNodes)
			eq(t, "OverlayType", c.OverlayType, OverlayFS)
			eq(t, "Export", c.Export, ExportFS)
			eq(t, "ExportOptions", c.ExportOptions, DefaultExportOptions)
			eq(t, "GaneshaConfig", c.GaneshaConfig, DefaultGaneshaConfig)
			eq(t, "GaneshaDBus", c.GaneshaDBus, "")
			eq(t, "StartFSID", c.StartFSID, uint32(0))
			if c.Allow != nil || c.OverlayOptions != nil {
				t.Errorf("Allow = %v, OverlayOptions = %v, want nil", c.Allow, c.OverlayOptions)
			}
		}},
		{"optional rendering keys", minimal + "static_dir = static\nethers = ethers\nallow = 192.168.1.0/24, 10.0.0.5 ,0.0.0.0/0\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "StaticDir", c.StaticDir, l.path("static"))
			eq(t, "Ethers", c.Ethers, l.path("ethers"))
			want := []netip.Prefix{
				netip.MustParsePrefix("192.168.1.0/24"),
				netip.MustParsePrefix("10.0.0.5/32"),
				netip.MustParsePrefix("0.0.0.0/0"),
			}
			if !reflect.DeepEqual(c.Allow, want) {
				t.Errorf("Allow = %v, want %v", c.Allow, want)
			}
		}},
		{"path containing # and ;", "[PXEBOOTFS]\npxe_template: a#b;c\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "PXETemplate", c.PXETemplate, l.path("a#b;c"))
		}},
		{"original full-mode file", full, func(t *testing.T, l testLayout, c *Config) {
			if !c.FullMode() {
				t.Fatal("FullMode() = false")
			}
			eq(t, "NodeDir", c.NodeDir, l.path("nodes"))
			eq(t, "RootDir", c.RootDir, l.path("root"))
			eq(t, "OverlayDir", c.OverlayDir, l.path("overlay"))
			eq(t, "StateDir", c.StateDir, l.path("state"))
			eq(t, "StartFSID", c.StartFSID, uint32(100))
		}},
		{"full mode with every key", full + "max_nodes = 7\noverlay_type = aufs\noverlay_options = index=on , nfs_export=on\nexport = none\nexport_options = ro , no_subtree_check\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "MaxNodes", c.MaxNodes, 7)
			eq(t, "OverlayType", c.OverlayType, AUFS)
			if want := []string{"index=on", "nfs_export=on"}; !reflect.DeepEqual(c.OverlayOptions, want) {
				t.Errorf("OverlayOptions = %q, want %q", c.OverlayOptions, want)
			}
			eq(t, "Export", c.Export, ExportNone)
			eq(t, "ExportOptions", c.ExportOptions, "ro,no_subtree_check")
		}},
		{"operations defaults", full, func(t *testing.T, l testLayout, c *Config) {
			eq(t, "ResetGuard", c.ResetGuard, DefaultResetGuard)
			eq(t, "ResetOnBoot", c.ResetOnBoot, false)
			eq(t, "MetricsListen", c.MetricsListen, "")
		}},
		{"operations keys", full + "reset_guard = 0\nreset_on_boot = Yes\nmetrics_listen = 127.0.0.1:9123\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "ResetGuard", c.ResetGuard, time.Duration(0))
			eq(t, "ResetOnBoot", c.ResetOnBoot, true)
			eq(t, "MetricsListen", c.MetricsListen, "127.0.0.1:9123")
		}},
		{"reset_guard in seconds", full + "reset_guard = 90\nreset_on_boot = off\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "ResetGuard", c.ResetGuard, 90*time.Second)
			eq(t, "ResetOnBoot", c.ResetOnBoot, false)
		}},
		{"metrics_listen forms", minimal + "metrics_listen = [::1]:0\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "MetricsListen", c.MetricsListen, "[::1]:0")
		}},
		{"metrics_listen every address", minimal + "metrics_listen = :9123\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "MetricsListen", c.MetricsListen, ":9123")
		}},
		{"callback keys", minimal + "callback_listen = 127.0.0.1:0\ncallback_url = http://192.0.2.1:8770/\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "CallbackURL", c.CallbackURL, "http://192.0.2.1:8770")
			eq(t, "InstallMaxBoots", c.InstallMaxBoots, 3)
		}},
		{"metrics_listen localhost", minimal + "metrics_listen = localhost:9123\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "MetricsListen", c.MetricsListen, "localhost:9123")
		}},
		{"ganesha keys", full + "export = ganesha\nganesha_config = ganesha.conf\nganesha_dbus = unix:path=/run/pxg/bus\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "Export", c.Export, ExportGanesha)
			eq(t, "GaneshaConfig", c.GaneshaConfig, l.path("ganesha.conf"))
			eq(t, "GaneshaDBus", c.GaneshaDBus, "unix:path=/run/pxg/bus")
		}},
		{"largest ganesha start_fsid", strings.Replace(full, "start_fsid: 100", "start_fsid: 65535\nmax_nodes = 1\nexport = ganesha", 1), func(t *testing.T, l testLayout, c *Config) {
			eq(t, "StartFSID", c.StartFSID, uint32(65535))
		}},
		{"largest start_fsid", strings.Replace(full, "start_fsid: 100", "start_fsid: 4294967295\nmax_nodes = 1", 1), func(t *testing.T, l testLayout, c *Config) {
			eq(t, "StartFSID", c.StartFSID, uint32(4294967295))
		}},
		{"existing node and overlay dirs", full, func(t *testing.T, l testLayout, c *Config) {
			// Loaded again below after creating them.
			for _, d := range []string{"nodes", "overlay", "state"} {
				if err := os.Mkdir(l.path(d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := Load(c.File); err != nil {
				t.Fatalf("Load with existing dirs: %v", err)
			}
		}},
		{"sibling with common prefix is not nested", strings.Replace(full, "node_dir: nodes", "node_dir: rootnodes", 1), func(t *testing.T, l testLayout, c *Config) {
			eq(t, "NodeDir", c.NodeDir, l.path("rootnodes"))
		}},
		{"BOM and CRLF", "\ufeff[PXEBOOTFS]\r\npxe_template: tmpl\r\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "PXETemplate", c.PXETemplate, l.path("tmpl"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			if err := os.WriteFile(l.path("a#b;c"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Load(l.write(t, tt.body))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.check(t, l, c)
		})
	}
}

// Relative paths follow the config file, not the working directory, and a
// config named by a relative path still gets an absolute File.
func TestRelativeToConfigFile(t *testing.T) {
	l := newLayout(t)
	sub := l.path("etc")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	body := "[PXEBOOTFS]\npxe_template: ../tmpl\nstatic_dir = ../static\n"
	if err := os.WriteFile(filepath.Join(sub, "p.cfg"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(l.path("static"))
	c, err := Load("../etc/p.cfg")
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "File", c.File, filepath.Join(sub, "p.cfg"))
	eq(t, "PXETemplate", c.PXETemplate, l.path("tmpl"))
	eq(t, "StaticDir", c.StaticDir, l.path("static"))
}

func TestParseUsesFileDir(t *testing.T) {
	l := newLayout(t)
	c, err := Parse(l.path("never-written.cfg"), []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "PXETemplate", c.PXETemplate, l.path("tmpl"))
}

func TestErrorFormat(t *testing.T) {
	inner := errors.New("boom")
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{File: "/f", Key: "k", Reason: "bad"}, "/f: [PXEBOOTFS] k: bad"},
		{&Error{File: "/f", Reason: "bad"}, "/f: bad"},
		{&Error{File: "/f", Key: "k", Reason: "bad", Err: inner}, "/f: [PXEBOOTFS] k: bad: boom"},
		{&Error{File: "/f", Err: inner}, "/f: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if tt.err.Err != nil && !errors.Is(tt.err, inner) {
				t.Error("Unwrap does not reach Err")
			}
		})
	}
}

func TestKeysTable(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Keys() {
		if seen[k.Name] {
			t.Errorf("key %s listed twice", k.Name)
		}
		seen[k.Name] = true
		if k.Doc == "" {
			t.Errorf("key %s has no doc", k.Name)
		}
	}
	for _, k := range fullModeKeys {
		if !seen[k] {
			t.Errorf("full-mode key %s is not in the table", k)
		}
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}
