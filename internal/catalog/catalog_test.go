package catalog

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/loader"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// newTestCatalog writes a template, ethers and static dir into a temp dir.
func newTestCatalog(t *testing.T, tmpl string, allow ...string) (*Catalog, *config.Config) {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{
		File:        filepath.Join(dir, "pxebootfs.cfg"),
		PXETemplate: filepath.Join(dir, "pxelinux.cfg.template"),
		StaticDir:   filepath.Join(dir, "static"),
		Ethers:      filepath.Join(dir, "ethers"),
	}
	for _, a := range allow {
		cfg.Allow = append(cfg.Allow, netip.MustParsePrefix(a))
	}
	testenv.WriteFile(t, cfg.PXETemplate, tmpl)
	testenv.WriteFile(t, cfg.Ethers, "# lab\naa:bb:cc:dd:ee:01 192.168.1.2\naa:bb:cc:dd:ee:02 10.9.9.9\n")
	if err := os.Mkdir(cfg.StaticDir, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(cfg.StaticDir, "default"), "DEFAULT local\n")
	testenv.WriteFile(t, filepath.Join(cfg.StaticDir, "01-aa-bb-cc-dd-ee-99"), "hand written\n")
	testenv.WriteFile(t, filepath.Join(cfg.StaticDir, "C0A80102"), "shadowed by the node name\n")
	if err := os.Symlink("/etc/passwd", filepath.Join(cfg.StaticDir, "passwd")); err != nil {
		t.Fatal(err)
	}
	c, err := New(loader.PXELinux, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, cfg
}

const twoNodes = "APPEND nfsroot=/netboot/node/<NODE> ip=<NODE> mac={{.MAC}} name={{.Name}}\n"

func TestResolve(t *testing.T) {
	c, _ := newTestCatalog(t, twoNodes, "192.168.0.0/16")
	tests := []struct {
		name    string
		kind    Kind
		node    string
		mac     string
		content string // "" = not checked
	}{
		{name: "C0A80102", kind: KindNode, node: "C0A80102", mac: "aa:bb:cc:dd:ee:01",
			content: "APPEND nfsroot=/netboot/node/C0A80102 ip=C0A80102 mac=aa:bb:cc:dd:ee:01 name=C0A80102\n"},
		{name: "c0a80103", kind: KindNode, node: "C0A80103",
			content: "APPEND nfsroot=/netboot/node/C0A80103 ip=C0A80103 mac= name=c0a80103\n"},
		{name: "01-aa-bb-cc-dd-ee-01", kind: KindNode, node: "C0A80102", mac: "aa:bb:cc:dd:ee:01"},
		{name: "01-aa-bb-cc-dd-ee-99", kind: KindStatic, content: "hand written\n"},
		{name: "default", kind: KindStatic, content: "DEFAULT local\n"},
		{name: "0A090909"},             // outside allow
		{name: "01-aa-bb-cc-dd-ee-02"}, // ethers maps it outside allow
		{name: "C0A8010"},              // prefix, no static file
		{name: "passwd"},               // symlink in static_dir is not followed
		{name: ".."},
		{name: "../etc/passwd"},
		{name: "a/b"},
		{name: "nul\x00"},
		{name: ""},
		{name: strings.Repeat("x", 300)},
	}
	for _, tt := range tests {
		t.Run(tt.name[:min(len(tt.name), 20)], func(t *testing.T) {
			e, err := c.Resolve(t.Context(), tt.name)
			if tt.kind == 0 {
				if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, ErrNotServed) {
					t.Fatalf("Resolve(%q) = %+v, %v; want not served", tt.name, e, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.name, err)
			}
			if e.Kind != tt.kind || e.Node.ID.String() != tt.node || e.Node.MAC != tt.mac {
				t.Errorf("Resolve(%q) = %+v", tt.name, e)
			}
			b, err := c.Render(e)
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Peek(e)
			if err != nil || st.Size() != int64(len(b)) {
				t.Errorf("Stat = %+v, %v; rendered %d bytes", st, err, len(b))
			}
			if tt.content != "" && string(b) != tt.content {
				t.Errorf("content %q, want %q", b, tt.content)
			}
		})
	}
}

func mustResolve(t *testing.T, c *Catalog, name string) Entry {
	t.Helper()
	e, err := c.Resolve(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestStaticNames(t *testing.T) {
	c, _ := newTestCatalog(t, twoNodes)
	got := strings.Join(c.StaticNames(), " ")
	if got != "01-aa-bb-cc-dd-ee-99 default" {
		t.Errorf("StaticNames = %q", got)
	}
}

func TestReloadKeepsOldOnError(t *testing.T) {
	c, cfg := newTestCatalog(t, twoNodes)
	testenv.WriteFile(t, cfg.PXETemplate, "APPEND {{.Node")
	if err := c.Reload(); err == nil {
		t.Fatal("Reload of a broken template succeeded")
	}
	b, err := c.Render(mustResolve(t, c, "C0A80102"))
	if err != nil || !strings.Contains(string(b), "nfsroot=/netboot/node/C0A80102") {
		t.Fatalf("old template no longer served: %q, %v", b, err)
	}
	testenv.WriteFile(t, cfg.PXETemplate, "NEW <NODE>\n")
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if b, _ := c.Render(mustResolve(t, c, "C0A80102")); string(b) != "NEW C0A80102\n" {
		t.Fatalf("after reload: %q", b)
	}
}

func TestWatchPicksUpChange(t *testing.T) {
	c, cfg := newTestCatalog(t, twoNodes)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go c.Watch(ctx, 10*time.Millisecond)
	testenv.WriteFile(t, cfg.PXETemplate, "CHANGED <NODE>\n")
	// Wait for the reload; the test's own timeout bounds this loop.
	for {
		if b, _ := c.Render(mustResolve(t, c, "C0A80102")); string(b) == "CHANGED C0A80102\n" {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type fakeProv struct {
	ensured []node.Node
	err     error
	known   bool // Peek finds the node registered
}

func (p *fakeProv) Booted(n node.Node) {}

func (p *fakeProv) Prepare(ctx context.Context, n node.Node) (node.Root, error) {
	p.ensured = append(p.ensured, n)
	return node.Root{FSID: 10000, Dir: "/netboot/node/" + n.ID.String()}, p.err
}
func (p *fakeProv) Peek(id node.ID) node.Root {
	return node.Root{Dir: "/netboot/node/" + id.String(), Known: p.known}
}
func (p *fakeProv) Nodes() []node.Node { return nil }

func TestOpenProvisionsRenderDoesNot(t *testing.T) {
	_, cfg := newTestCatalog(t, "nfsroot={{.NodeDir}} fsid={{.FSID}} <NODE>\n")
	p := &fakeProv{}
	c, err := New(loader.PXELinux, cfg, Options{Prov: p})
	if err != nil {
		t.Fatal(err)
	}
	e := mustResolve(t, c, "C0A80102")
	if _, err := c.Render(e); err != nil || len(p.ensured) != 0 {
		t.Fatalf("Render provisioned: %v, %v", p.ensured, err)
	}
	b, err := openCommit(c, e)
	if err != nil || string(b) != "nfsroot=/netboot/node/C0A80102 fsid=10000 C0A80102\n" || len(p.ensured) != 1 {
		t.Fatalf("Open = %q, %v; ensured %v", b, err, p.ensured)
	}
	p.err = errors.New("exportfs failed")
	if _, err := openCommit(c, e); err == nil {
		t.Fatal("Open succeeded though provisioning failed")
	}
}

// TestStatStable: the kernel may cache a name's size only when its content
// changes by nothing but an announced reload.
func TestStatStable(t *testing.T) {
	_, cfg := newTestCatalog(t, twoNodes, "192.168.0.0/16")
	testenv.WriteFile(t, filepath.Join(cfg.StaticDir, "menu"), "MENU\n")
	tests := []struct {
		name   string
		prov   *fakeProv // nil: config-only mode
		lookup string
		want   bool
	}{
		{"node, config-only mode", nil, "C0A80102", true},
		{"registered node, full mode", &fakeProv{known: true}, "C0A80102", true},
		{"new node, full mode (its fsid is not yet its own)", &fakeProv{}, "C0A80102", false},
		{"static file (edited in place, unwatched)", nil, "menu", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var prov node.Provisioner
			if tt.prov != nil {
				prov = tt.prov
			}
			c, err := New(loader.PXELinux, cfg, Options{Prov: prov})
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Peek(mustResolve(t, c, tt.lookup))
			if err != nil || st.Stable != tt.want {
				t.Fatalf("Stat = %+v, %v; want Stable %v", st, err, tt.want)
			}
		})
	}
}

// TestOnChange: callbacks run after a reload or SetConfig that changed
// something, once the new content is served; not after a failed one.
func TestOnChange(t *testing.T) {
	c, cfg := newTestCatalog(t, twoNodes, "192.168.0.0/16")
	var seen []string
	c.OnChange(func() {
		var b []byte
		if e, err := c.Resolve(t.Context(), "C0A80102"); err == nil {
			b, _ = c.Render(e)
		}
		seen = append(seen, string(b))
	})
	testenv.WriteFile(t, cfg.PXETemplate, "NEW <NODE>\n")
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, cfg.PXETemplate, "{{ broken")
	if err := c.Reload(); err == nil {
		t.Fatal("broken template loaded")
	}
	if err := c.SetConfig(otherConfig(t, cfg, "OTHER <NODE>\n")); err != nil {
		t.Fatal(err)
	}
	want := []string{"NEW C0A80102\n", ""}
	if len(seen) != 2 || seen[0] != want[0] {
		t.Errorf("callbacks saw %q, want the new content once per change (%q, then a config without this node)", seen, want)
	}
}

// openCommit opens e and serves it, as the filesystem does when the
// content is the version it looked up.
func openCommit(c *Catalog, e Entry) ([]byte, error) {
	o, err := c.Open(context.Background(), e)
	if err != nil {
		return nil, err
	}
	o.Commit()
	return o.Data, nil
}

// TestStaticSwappedForSymlinkAfterResolve: a static file resolved as a
// regular file and then replaced by a symlink (the race a rename opens
// between a lookup and the read) is not served: the read opens beneath the
// static directory and follows no symlink, so the target's bytes never
// come out, through Peek (a lookup) or Open.
func TestStaticSwappedForSymlinkAfterResolve(t *testing.T) {
	c, cfg := newTestCatalog(t, twoNodes)
	secret := filepath.Join(t.TempDir(), "secret")
	testenv.WriteFile(t, secret, "SECRET\n")
	name := filepath.Join(cfg.StaticDir, "default")
	e := mustResolve(t, c, "default")
	if e.Kind != KindStatic {
		t.Fatalf("default resolved as %+v", e)
	}
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, name); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Peek(e); err == nil || strings.Contains(string(got.Data), "SECRET") {
		t.Errorf("Peek after the swap: %q, %v; want not served", got.Data, err)
	}
	if b, err := openCommit(c, e); err == nil || strings.Contains(string(b), "SECRET") {
		t.Errorf("Open after the swap: %q, %v; want not served", b, err)
	}
}
