package catalog

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// otherConfig writes a second set of files beside cfg's and returns a config
// naming them.
func otherConfig(t *testing.T, cfg *config.Config, tmpl string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	n := *cfg
	n.PXETemplate = filepath.Join(dir, "other.template")
	n.Ethers = filepath.Join(dir, "other.ethers")
	n.StaticDir = filepath.Join(dir, "other.static")
	n.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	testenv.WriteFile(t, n.PXETemplate, tmpl)
	testenv.WriteFile(t, n.Ethers, "aa:bb:cc:dd:ee:03 10.1.2.3\n")
	if err := os.Mkdir(n.StaticDir, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(n.StaticDir, "menu"), "MENU\n")
	return &n
}

func TestSetConfig(t *testing.T) {
	tests := []struct {
		name   string
		lookup string
		before string // "" means not served
		after  string
	}{
		{"template", "0A010203", "", "OTHER 0A010203\n"},
		{"allow drops a node", "C0A80102", "APPEND nfsroot=/netboot/node/C0A80102 ip=C0A80102 mac=aa:bb:cc:dd:ee:01 name=C0A80102\n", ""},
		{"ethers", "01-aa-bb-cc-dd-ee-03", "", "OTHER 0A010203\n"},
		{"static_dir old file gone", "default", "DEFAULT local\n", ""},
		{"static_dir new file", "menu", "", "MENU\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cfg := newTestCatalog(t, twoNodes, "192.168.0.0/16")
			check := func(when, want string) {
				t.Helper()
				e, err := c.Resolve(t.Context(), tt.lookup)
				if want == "" {
					if err == nil {
						t.Errorf("%s: %s is served", when, tt.lookup)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s: %v", when, err)
				}
				if b, err := c.Render(e); err != nil || string(b) != want {
					t.Errorf("%s: %s = %q, %v; want %q", when, tt.lookup, b, err, want)
				}
			}
			check("before", tt.before)
			n := otherConfig(t, cfg, "OTHER <NODE>\n")
			if err := c.SetConfig(n); err != nil {
				t.Fatal(err)
			}
			check("after", tt.after)
			if c.Config() != n {
				t.Error("Config() is not the new config")
			}
		})
	}
}

func TestSetConfigInvalidKeepsOld(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(n *config.Config)
	}{
		{"template does not parse", func(n *config.Config) { testenv.WriteFile(t, n.PXETemplate, "APPEND {{.Node") }},
		{"template never names the node", func(n *config.Config) { testenv.WriteFile(t, n.PXETemplate, "APPEND nothing\n") }},
		{"template missing", func(n *config.Config) { os.Remove(n.PXETemplate) }},
		{"ethers broken", func(n *config.Config) { testenv.WriteFile(t, n.Ethers, "not an ethers line\n") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cfg := newTestCatalog(t, twoNodes)
			n := otherConfig(t, cfg, "OTHER <NODE>\n")
			tt.spoil(n)
			if err := c.SetConfig(n); err == nil {
				t.Fatal("SetConfig of a broken config succeeded")
			}
			if c.Config() != cfg {
				t.Error("Config() changed after a failed SetConfig")
			}
			b, err := c.Render(mustResolve(t, c, "C0A80102"))
			if err != nil || string(b) != "APPEND nfsroot=/netboot/node/C0A80102 ip=C0A80102 mac=aa:bb:cc:dd:ee:01 name=C0A80102\n" {
				t.Errorf("old config no longer served: %q, %v", b, err)
			}
		})
	}
}

// After SetConfig, Watch follows the new template file, and an automatic
// reload racing SetConfig never brings the old config back.
func TestWatchFollowsSetConfig(t *testing.T) {
	c, cfg := newTestCatalog(t, twoNodes)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go c.Watch(ctx, time.Millisecond)
	n := otherConfig(t, cfg, "OTHER <NODE>\n")
	n.Allow = nil
	for i := 0; i < 20; i++ {
		// Touching the old template keeps Watch reloading it meanwhile.
		testenv.WriteFile(t, cfg.PXETemplate, twoNodes+"# "+string(rune('a'+i))+"\n")
		if err := c.SetConfig(n); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if c.Config() != n {
		t.Fatal("an automatic reload replaced the admin's config")
	}
	testenv.WriteFile(t, n.PXETemplate, "CHANGED <NODE>\n")
	for {
		b, err := c.Render(mustResolve(t, c, "C0A80102"))
		if err != nil && !errors.Is(err, ErrNotServed) {
			t.Fatal(err)
		}
		if string(b) == "CHANGED C0A80102\n" {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}
