package catalog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pxebootfs/pxebootfs/internal/loader"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// newGRUBCatalog is newTestCatalog's config with a GRUB template and a
// static tree holding a module directory, a symlinked directory and a file.
func newGRUBCatalog(t *testing.T, prov *fakeProv) (*Catalog, string) {
	t.Helper()
	_, cfg := newTestCatalog(t, twoNodes, "192.168.0.0/16")
	dir := filepath.Dir(cfg.PXETemplate)
	cfg.GrubMount = filepath.Join(dir, "grub")
	cfg.GrubTemplate = filepath.Join(dir, "grub.cfg.template")
	cfg.GrubStaticDir = filepath.Join(dir, "grubstatic")
	testenv.WriteFile(t, cfg.GrubTemplate, "echo grub <NODE> {{.MAC}} fsid={{.FSID}}\n")
	if err := os.MkdirAll(filepath.Join(cfg.GrubStaticDir, "x86_64-efi"), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(cfg.GrubStaticDir, "x86_64-efi", "normal.mod"), "module")
	testenv.WriteFile(t, filepath.Join(cfg.GrubStaticDir, "font.pf2"), "font")
	if err := os.Symlink("/etc", filepath.Join(cfg.GrubStaticDir, "etc")); err != nil {
		t.Fatal(err)
	}
	var c *Catalog
	var err error
	if prov != nil {
		c, err = New(loader.GRUB, cfg, Options{Prov: prov})
	} else {
		c, err = New(loader.GRUB, cfg, Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return c, cfg.GrubStaticDir
}

func TestGRUBNames(t *testing.T) {
	c, static := newGRUBCatalog(t, nil)
	tests := []struct {
		name string
		want string // content; "" for not served
	}{
		{"grub.cfg-01-aa-bb-cc-dd-ee-01", "echo grub C0A80102 aa:bb:cc:dd:ee:01 fsid=0\n"},
		{"grub.cfg-aa:bb:cc:dd:ee:01", "echo grub C0A80102 aa:bb:cc:dd:ee:01 fsid=0\n"},
		{"grub.cfg-C0A80102", "echo grub C0A80102 aa:bb:cc:dd:ee:01 fsid=0\n"},
		{"grub.cfg-192.168.1.2", "echo grub C0A80102 aa:bb:cc:dd:ee:01 fsid=0\n"},
		{"grub.cfg-10.9.9.9", ""},                              // outside allow
		{"grub.cfg-aa:bb:cc:dd:ee:77", ""},                     // unknown MAC
		{"grub.cfg-C0A8", ""},                                  // a hex prefix: not a node, no file
		{"C0A80102", ""},                                       // pxelinux names are not GRUB's
		{"font.pf2", "font"},                                   // static
		{"grub.cfg", string(loader.GRUB.Builtins["grub.cfg"])}, // built in
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := c.Resolve(context.Background(), tt.name)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("%s is served as %+v", tt.name, e)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.Render(e)
			st, serr := c.Peek(e)
			if err != nil || serr != nil || string(b) != tt.want || st.Size() != int64(len(b)) {
				t.Fatalf("Render = %q, %v; Stat %+v, %v; want %q", b, err, st, serr, tt.want)
			}
		})
	}
	if e, err := c.Resolve(context.Background(), "x86_64-efi"); err != nil || e.Kind != KindDir || e.Static != filepath.Join(static, "x86_64-efi") {
		t.Errorf("Resolve(x86_64-efi) = %+v, %v; want the static subdirectory", e, err)
	}
	for _, name := range []string{"etc", "font.pf2", "..", "missing"} {
		if e, err := c.Resolve(context.Background(), name); err == nil && e.Kind == KindDir {
			t.Errorf("Resolve(%q) = %+v: served as a directory", name, e)
		}
	}
	// An admin's grub.cfg replaces the built-in one.
	testenv.WriteFile(t, filepath.Join(static, "grub.cfg"), "configfile mine\n")
	e, _ := c.Resolve(context.Background(), "grub.cfg")
	if b, _ := c.Render(e); string(b) != "configfile mine\n" {
		t.Errorf("static grub.cfg not served: %q", b)
	}
	var names []string
	for _, d := range c.List() {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, " "); got != "font.pf2 grub.cfg x86_64-efi" {
		t.Errorf("List = %q", got)
	}
}

// TestGRUBSharesProvisioning: a GRUB name provisions the node like its
// pxelinux name, through the same provisioner.
func TestGRUBSharesProvisioning(t *testing.T) {
	p := &fakeProv{}
	c, _ := newGRUBCatalog(t, p)
	e, err := c.Resolve(context.Background(), "grub.cfg-aa:bb:cc:dd:ee:01")
	if err != nil {
		t.Fatal(err)
	}
	b, err := openCommit(c, e)
	if err != nil || string(b) != "echo grub C0A80102 aa:bb:cc:dd:ee:01 fsid=10000\n" || len(p.ensured) != 1 || p.ensured[0].ID.String() != "C0A80102" {
		t.Fatalf("Open = %q, %v; ensured %v", b, err, p.ensured)
	}
}
