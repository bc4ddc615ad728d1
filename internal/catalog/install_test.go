package catalog

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/loader"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// TestInstallTemplates walks a node through its install states and checks
// which template each name renders from, that stat's size matches, and
// that only servings of the install config count for the loop guard.
func TestInstallTemplates(t *testing.T) {
	for _, grub := range []bool{false, true} {
		t.Run(map[bool]string{false: "pxelinux", true: "grub"}[grub], func(t *testing.T) {
			_, cfg := newTestCatalog(t, twoNodes, "192.168.0.0/16")
			dir := filepath.Dir(cfg.PXETemplate)
			cfg.InstallTemplate = filepath.Join(dir, "install.template")
			cfg.GrubMount = filepath.Join(dir, "grub")
			cfg.GrubTemplate = filepath.Join(dir, "grub.template")
			cfg.GrubInstallTemplate = filepath.Join(dir, "grub-install.template")
			testenv.WriteFile(t, cfg.InstallTemplate, "install <NODE> {{.InstallState}} {{.CallbackURL}}/done?token={{.InstallToken}}\n")
			testenv.WriteFile(t, cfg.GrubTemplate, "grub <NODE>\n")
			testenv.WriteFile(t, cfg.GrubInstallTemplate, "grub-install <NODE> {{.InstallState}}\n")
			ld, name, usual, local := loader.PXELinux, "C0A80102", "APPEND nfsroot", "LOCALBOOT 0"
			if grub {
				ld, name, usual, local = loader.GRUB, "grub.cfg-C0A80102", "grub C0A80102", "exit"
			}
			reg := openRegistry(t, dir)
			changes := 0
			m := install.New(install.Options{Store: reg, Dir: filepath.Join(dir, "state"), CallbackURL: "http://192.0.2.1:8770", MaxBoots: 2, Changed: func(node.ID) { changes++ }})
			c, err := New(ld, cfg, Options{Inst: m})
			if err != nil {
				t.Fatal(err)
			}
			id := node.MustParse(name[len(name)-8:])

			fetch := func(want string) string {
				t.Helper()
				e, err := c.Resolve(context.Background(), name)
				if err != nil {
					t.Fatal(err)
				}
				st, err := c.Peek(e)
				if err != nil {
					t.Fatal(err)
				}
				b, err := openCommit(c, e)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), want) || st.Size() != int64(len(b)) {
					t.Fatalf("%s = %q (stat size %d), want it to hold %q", name, b, st.Size(), want)
				}
				return string(b)
			}
			fetch(usual)
			if err := m.Enter(id, "test"); err != nil {
				t.Fatal(err)
			}
			tok := m.View(id).Token
			got := fetch("install C0A80102 install")
			if !grub && !strings.Contains(got, "http://192.0.2.1:8770/v1/install/C0A80102/done?token="+tok) {
				t.Fatalf("install config %q lacks the callback", got)
			}
			if m.View(id).Loop {
				t.Fatal("loop after one serving")
			}
			fetch("install C0A80102 install")
			if m.View(id).Loop {
				t.Fatal("loop after install_max_boots servings")
			}
			fetch("install C0A80102 install")
			if !m.View(id).Loop {
				t.Fatal("no loop flag after more than install_max_boots servings")
			}
			if out := m.Report(id.Addr(), id, install.Done, tok, nil); out.Status != 200 {
				t.Fatal(out)
			}
			fetch(local)
			fetch(local)
			if rec, _ := reg.Get(id); rec.Install.Served != 0 {
				t.Fatalf("local configs counted: %+v", rec.Install)
			}
			if changes != 2 {
				t.Errorf("%d changes announced, want 2 (install, done)", changes)
			}
			// Install mode without an install template: the usual one.
			if !c.HasInstallTemplate(id) {
				t.Fatal("HasInstallTemplate = false with an install template")
			}
			cfg2 := *cfg
			cfg2.InstallTemplate, cfg2.GrubInstallTemplate = "", ""
			if err := c.SetConfig(&cfg2); err != nil {
				t.Fatal(err)
			}
			if c.HasInstallTemplate(id) {
				t.Fatal("HasInstallTemplate = true without one")
			}
			if err := m.Enter(id, "test"); err != nil {
				t.Fatal(err)
			}
			fetch(usual)
		})
	}
}

// TestInstallFirstSight: an inventory node with install = true enters
// install mode at its first open (stat before it is not stable), and
// once installed it is not sent back to install.
func TestInstallFirstSight(t *testing.T) {
	_, cfg := newTestCatalog(t, twoNodes, "192.168.0.0/16")
	dir := filepath.Dir(cfg.PXETemplate)
	cfg.InstallTemplate = filepath.Join(dir, "install.template")
	testenv.WriteFile(t, cfg.InstallTemplate, "install <NODE> {{.InstallToken}}\n")
	cfg.Inventory = filepath.Join(dir, "nodes.ini")
	testenv.WriteFile(t, cfg.Inventory, "[node \"C0A80109\"]\ninstall = true\n")
	reg := openRegistry(t, dir)
	m := install.New(install.Options{Store: reg, Dir: filepath.Join(dir, "state")})
	c, err := New(loader.PXELinux, cfg, Options{Inst: m})
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Resolve(context.Background(), "C0A80109")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := c.Peek(e)
	if st.Stable {
		t.Fatal("stat before the first open is stable, but the open makes a token")
	}
	b, err := openCommit(c, e)
	id := node.MustParse("C0A80109")
	tok := m.View(id).Token
	if err != nil || len(tok) != 32 || string(b) != "install C0A80109 "+tok+"\n" {
		t.Fatalf("first open = %q, %v", b, err)
	}
	if st, _ := c.Peek(e); !st.Stable || st.Size() != int64(len(b)) {
		t.Fatalf("stat after = %+v", st)
	}
	if err := m.Finish(id); err != nil {
		t.Fatal(err)
	}
	if b, _ := openCommit(c, e); !strings.Contains(string(b), "LOCALBOOT 0") {
		t.Fatalf("installed node got %q", b)
	}
}

// openRegistry opens a registry in dir/state for the test.
func openRegistry(t *testing.T, dir string) *registry.Registry {
	t.Helper()
	reg, err := registry.Open(registry.Options{Dir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}
