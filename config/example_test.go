package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

const (
	examplePath  = "../pxebootfs.cfg.example"
	templatePath = "../pxelinux.cfg.template"
)

// commentedSetting matches a setting the example ships commented out, such as
// "#node_dir: /srv/pxebootfs/nodes"; prose comments have a space after #.
var commentedSetting = regexp.MustCompile(`(?m)^#([a-z_]+\s*[:=])`)

// exampleCopy copies the example into a temp dir beside a template (the
// repository's, or a placeholder while that does not exist yet) and returns
// the dir and the example's text.
func exampleCopy(t *testing.T) (string, string) {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tmpl, err := os.ReadFile(templatePath)
	if os.IsNotExist(err) {
		tmpl, err = []byte("placeholder\n"), nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pxelinux.cfg.template"), tmpl, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, string(data)
}

// The example as shipped must load from the repository root.
func TestExampleInRepo(t *testing.T) {
	if _, err := os.Stat(templatePath); err != nil {
		t.Fatalf("%s must ship beside the example: %v", templatePath, err)
	}
	c, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if c.FullMode() {
		t.Error("the example must ship in config-only mode")
	}
	want, _ := filepath.Abs(templatePath)
	eq(t, "PXETemplate", c.PXETemplate, want)
}

func TestExampleConfigOnly(t *testing.T) {
	dir, text := exampleCopy(t)
	c, err := Parse(filepath.Join(dir, "pxebootfs.cfg"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if c.FullMode() {
		t.Error("the example must ship in config-only mode")
	}
	eq(t, "PXETemplate", c.PXETemplate, filepath.Join(dir, "pxelinux.cfg.template"))
	if c.StaticDir != "" || c.Ethers != "" || c.Allow != nil {
		t.Errorf("optional keys active in the example: %+v", c)
	}
}

// Uncommenting every setting in the example, with its demo paths moved into
// a temp dir, gives a valid full-mode config with the documented values.
func TestExampleFullMode(t *testing.T) {
	dir, text := exampleCopy(t)
	text = commentedSetting.ReplaceAllString(text, "$1")
	text = strings.NewReplacer(
		"/srv/pxebootfs/", dir+"/",
		"/srv/tftp/pxelinux.static", dir+"/static",
		"/srv/tftp/grub.static", dir+"/grubstatic",
		"/srv/http/ipxe.static", dir+"/ipxestatic",
		"/srv/http/ipxe", dir+"/ipxe",
		"/srv/tftp/grub", dir+"/tftp/grub",
		"/srv/tftp/images", dir+"/tftp/images",
		"/srv/tftp", dir+"/tftp",
		"/etc/ethers", dir+"/ethers",
		"/var/lib/pxebootfs", dir+"/state",
		"/usr/local/sbin/pxe-content-generator", dir+"/generator",
		"/etc/pxebootfs/nodes.ini", dir+"/nodes.ini",
		"/etc/pxebootfs/", dir+"/",
	).Replace(text)
	for _, f := range []string{"install.template", "local.template", "grub-install.template", "grub-local.template",
		"node.ipxe.template", "install.ipxe.template", "local.ipxe.template",
		"etcd-client.crt", "etcd-client.key", "etcd-ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("echo <NODE>\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "generator"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nodes.ini"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"static", "grubstatic", "ipxestatic", "ipxe", "tftp", "tftp/grub"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "grub.cfg.template"), []byte("echo <NODE>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ethers"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(filepath.Join(dir, "pxebootfs.cfg"), []byte(text))
	if err != nil {
		t.Fatalf("%v\n--- uncommented example:\n%s", err, text)
	}
	if !c.FullMode() {
		t.Fatal("FullMode() = false")
	}
	eq(t, "NodeDir", c.NodeDir, filepath.Join(dir, "nodes"))
	eq(t, "RootDir", c.RootDir, filepath.Join(dir, "root"))
	eq(t, "OverlayDir", c.OverlayDir, filepath.Join(dir, "overlay"))
	eq(t, "StateDir", c.StateDir, filepath.Join(dir, "state"))
	eq(t, "StartFSID", c.StartFSID, uint32(1000))
	eq(t, "MaxNodes", c.MaxNodes, DefaultMaxNodes)
	eq(t, "OverlayType", c.OverlayType, DefaultOverlayType)
	eq(t, "Export", c.Export, DefaultExport)
	eq(t, "ExportOptions", c.ExportOptions, DefaultExportOptions)
	wantAllow := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("10.0.0.5/32")}
	if !reflect.DeepEqual(c.Allow, wantAllow) {
		t.Errorf("Allow = %v, want %v", c.Allow, wantAllow)
	}
}

// Every key is documented in the example, with its default where it has
// one, and the original keys are shown in the "key: value" syntax.
func TestExampleDocumentsEveryKey(t *testing.T) {
	_, text := exampleCopy(t)
	for _, k := range Keys() {
		t.Run(k.Name, func(t *testing.T) {
			re := regexp.MustCompile(`(?m)^#?` + k.Name + `\s*([:=])`)
			m := re.FindStringSubmatch(text)
			if m == nil {
				t.Fatalf("%s is not in %s", k.Name, examplePath)
			}
			switch k.Name {
			case "pxe_template", "node_dir", "root_dir", "overlay_dir", "start_fsid":
				if m[1] != ":" {
					t.Errorf("original key %s should be shown as %q", k.Name, k.Name+": value")
				}
			}
			if k.Default != "" && !strings.Contains(text, "Default: "+k.Default) {
				t.Errorf("default %q of %s is not documented as %q", k.Default, k.Name, "Default: "+k.Default)
			}
		})
	}
}
