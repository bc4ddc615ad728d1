package catalog

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/loader"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// recProv records every call, to tell provisioned nodes from config-only
// ones.
type recProv struct {
	mu      sync.Mutex
	ensured []string
	peeked  []string
}

func (p *recProv) Booted(n node.Node) {}

func (p *recProv) Prepare(ctx context.Context, n node.Node) (node.Root, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ensured = append(p.ensured, n.ID.String())
	return node.Root{FSID: 10000, Dir: "/netboot/node/" + n.ID.String()}, nil
}

func (p *recProv) Peek(id node.ID) node.Root {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.peeked = append(p.peeked, id.String())
	return node.Root{FSID: 10000, Dir: "/netboot/node/" + id.String()}
}

func (p *recProv) Nodes() []node.Node { return nil }

func (p *recProv) calls() (ensured, peeked []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.ensured...), append([]string(nil), p.peeked...)
}

const invTemplate = "node=<NODE> host={{.Hostname}} mac={{.MAC}} dir={{.NodeDir}} role={{.Vars.role}}\n"

var testInventory = testenv.Inventory("inst.template")

// newInventoryCatalog is newTestCatalog's layout plus an inventory.
func newInventoryCatalog(t *testing.T, prov node.Provisioner) (*Catalog, *config.Config) {
	t.Helper()
	_, cfg := newTestCatalog(t, twoNodes)
	dir := filepath.Dir(cfg.File)
	testenv.WriteFile(t, cfg.PXETemplate, invTemplate)
	cfg.Inventory = filepath.Join(dir, "nodes.ini")
	testenv.WriteFile(t, cfg.Inventory, testInventory)
	testenv.WriteFile(t, filepath.Join(dir, "inst.template"), "install <NODE> {{.Hostname}} suite={{.Vars.suite}} dir={{.NodeDir}} fsid={{.FSID}}\n")
	c, err := New(loader.PXELinux, cfg, Options{Prov: prov})
	if err != nil {
		t.Fatal(err)
	}
	return c, cfg
}

func TestInventoryResolve(t *testing.T) {
	prov := &recProv{}
	c, _ := newInventoryCatalog(t, prov)
	tests := []struct {
		name      string
		node      string
		content   string
		provision bool
	}{
		{name: "C0A80105", node: "C0A80105", provision: true,
			content: "node=C0A80105 host=n5 mac=52:54:00:00:00:05 dir=/netboot/node/C0A80105 role=compute\n"},
		{name: "01-52-54-00-00-00-05", node: "C0A80105", provision: true,
			content: "node=C0A80105 host=n5 mac=52:54:00:00:00:05 dir=/netboot/node/C0A80105 role=compute\n"},
		{name: "C0A80106", node: "C0A80106", content: "install C0A80106 inst-6 suite=bookworm dir= fsid=0\n"},
		{name: "01-52-54-00-00-00-16", node: "C0A80106", content: "install C0A80106 inst-6 suite=bookworm dir= fsid=0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prov.ensured, prov.peeked = nil, nil
			e, err := c.Resolve(t.Context(), tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if e.Kind != KindNode || e.Node.ID.String() != tt.node || e.Inv == nil {
				t.Fatalf("Resolve = %+v", e)
			}
			b, err := c.Render(e)
			if err != nil || string(b) != tt.content {
				t.Fatalf("Render = %q, %v; want %q", b, err, tt.content)
			}
			b, err = openCommit(c, e)
			if err != nil || string(b) != tt.content {
				t.Fatalf("Open = %q, %v; want %q", b, err, tt.content)
			}
			ensured, peeked := prov.calls()
			if tt.provision != (len(ensured) == 1 && len(peeked) == 1) || !tt.provision && (len(ensured)+len(peeked)) != 0 {
				t.Errorf("provision = %v but Ensure %v, Peek %v", tt.provision, ensured, peeked)
			}
		})
	}
	// A node outside the inventory lacks .Vars.role: an error, not a hole.
	if _, err := c.Render(mustResolve(t, c, "C0A80102")); err == nil || !strings.Contains(err.Error(), "role") {
		t.Errorf("render without the var: %v", err)
	}
	if n := c.InventoryNodes(); len(n) != 2 {
		t.Errorf("InventoryNodes = %d", len(n))
	}
}

func TestInventoryLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		inv  string
		want []string
	}{
		{"mac conflicts with ethers", "[node \"C0A80109\"]\nmac = aa:bb:cc:dd:ee:01\nvar.role = x\n",
			[]string{"nodes.ini:1", "aa:bb:cc:dd:ee:01", "ethers", "192.168.1.2"}},
		{"node lacks a var pxe_template uses", "# x\n[node \"C0A80109\"]\nhostname = n9\n",
			[]string{"nodes.ini:2", `[node "C0A80109"]`, "role"}},
		{"bad line", "[node \"C0A80109\"]\nvar.role = x\nmac = nope\n", []string{"nodes.ini:3", "nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cfg := newTestCatalog(t, invTemplate)
			cfg.Inventory = filepath.Join(filepath.Dir(cfg.File), "nodes.ini")
			testenv.WriteFile(t, cfg.Inventory, tt.inv)
			_, err := New(loader.PXELinux, cfg, Options{})
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestInventoryReload: edits of the inventory and of a per-node template
// are seen as changes; a broken inventory keeps the previous one serving.
func TestInventoryReload(t *testing.T) {
	c, cfg := newInventoryCatalog(t, nil)
	tmpl := filepath.Join(filepath.Dir(cfg.File), "inst.template")
	future := time.Now().Add(time.Hour)
	testenv.WriteFile(t, tmpl, "install2 <NODE>\n")
	os.Chtimes(tmpl, future, future)
	if !c.Changed() {
		t.Fatal("a per-node template edit is not a change")
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if b, _ := c.Render(mustResolve(t, c, "C0A80106")); string(b) != "install2 C0A80106\n" {
		t.Errorf("after template edit: %q", b)
	}
	testenv.WriteFile(t, cfg.Inventory, testInventory+"\n[node \"C0A80107\"]\nmac = 52:54:00:00:00:07\nvar.role = new\n")
	os.Chtimes(cfg.Inventory, future, future)
	if !c.Changed() {
		t.Fatal("an inventory edit is not a change")
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Resolve(t.Context(), "01-52-54-00-00-00-07"); err != nil || e.Node.ID.String() != "C0A80107" {
		t.Errorf("new inventory MAC: %+v, %v", e, err)
	}
	testenv.WriteFile(t, cfg.Inventory, "[node \"C0A80107\"]\nmac = broken\n")
	if err := c.Reload(); err == nil || !strings.Contains(err.Error(), "nodes.ini:2") {
		t.Errorf("Reload of a broken inventory: %v", err)
	}
	if e, err := c.Resolve(t.Context(), "01-52-54-00-00-00-07"); err != nil || e.Node.ID.String() != "C0A80107" {
		t.Errorf("previous inventory no longer served: %+v, %v", e, err)
	}
}

// genCatalog sets up a catalog whose generator logs its arguments (one
// run per line) to dir/args and serves "gen-*" names and, when asked for
// nodes, C0A80102 only.
func genCatalog(t *testing.T, forNodes bool, allow ...string) (*Catalog, func() []string) {
	t.Helper()
	_, cfg := newTestCatalog(t, twoNodes, allow...)
	dir := filepath.Dir(cfg.File)
	args := filepath.Join(dir, "args")
	prog := filepath.Join(dir, "gen")
	testenv.WriteFile(t, prog, `#!/bin/sh
echo "$*" >> '`+args+`'
case "$2" in
*/gen-empty) ;;
*/gen-*|*/C0A80102|*/01-52-54-00-00-00-99) printf 'generated for %s\n' "$*" >&3 ;;
*) exit 1 ;;
esac
`)
	if err := os.Chmod(prog, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.ContentGenerator = prog
	cfg.GeneratorForNodes = forNodes
	cfg.GeneratorTimeout = time.Minute
	cfg.GeneratorTTL = time.Minute
	cfg.GeneratorConcurrency = 4
	c, err := New(loader.PXELinux, cfg, Options{Mountpoint: "/srv/tftp/pxelinux.cfg/"})
	if err != nil {
		t.Fatal(err)
	}
	return c, func() []string {
		b, _ := os.ReadFile(args)
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
}

func TestGeneratedResolve(t *testing.T) {
	tests := []struct {
		name     string
		forNodes bool
		kind     Kind   // 0: not served
		args     string // what the program got; "" if it must not run
	}{
		{name: "gen-menu", kind: KindGenerated, args: "--file /srv/tftp/pxelinux.cfg/gen-menu"},
		{name: "gen-with space $(x)", kind: KindGenerated, args: "--file /srv/tftp/pxelinux.cfg/gen-with space $(x)"},
		{name: "unknown", args: "--file /srv/tftp/pxelinux.cfg/unknown"},
		{name: "gen-empty", args: "--file /srv/tftp/pxelinux.cfg/gen-empty"}, // exit 0, no bytes
		{name: "default", kind: KindStatic},                                  // static wins
		{name: "C0A80102", kind: KindNode},                                   // node names: template
		{name: "01-aa-bb-cc-dd-ee-01", kind: KindNode},                       // ethers MAC
		{name: "0A090909"},                               // outside allow: never asked
		{name: "01-aa-bb-cc-dd-ee-02"},                   // ethers maps it outside allow
		{name: "01-aa-bb-cc-dd-ee-99", kind: KindStatic}, // unknown MAC, static file
		{name: "01-52-54-00-00-00-99", kind: KindGenerated, // unknown MAC: asked with --mac
			args: "--file /srv/tftp/pxelinux.cfg/01-52-54-00-00-00-99 --mac 52:54:00:00:00:99"},
		{name: "C0A80102", forNodes: true, kind: KindGenerated,
			args: "--file /srv/tftp/pxelinux.cfg/C0A80102 --ip 192.168.1.2 --mac aa:bb:cc:dd:ee:01 --node C0A80102"},
		{name: "01-aa-bb-cc-dd-ee-01", forNodes: true, kind: KindNode, // refused: the template serves it
			args: "--file /srv/tftp/pxelinux.cfg/01-aa-bb-cc-dd-ee-01 --ip 192.168.1.2 --mac aa:bb:cc:dd:ee:01 --node C0A80102"},
		{name: "0A090909", forNodes: true},
		// Hostile names never reach the program.
		{name: ".."}, {name: "."}, {name: "../gen-x"}, {name: "a/gen-x"}, {name: "gen-\x00"},
		{name: "gen-\n"}, {name: "gen-\x7f"}, {name: "gen-é"}, {name: ""}, {name: "gen-" + strings.Repeat("x", 300)},
	}
	for _, tt := range tests {
		t.Run(tt.name[:min(len(tt.name), 24)], func(t *testing.T) {
			c, args := genCatalog(t, tt.forNodes, "192.168.0.0/16")
			e, err := c.Resolve(t.Context(), tt.name)
			if tt.kind == 0 {
				if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, ErrNotServed) {
					t.Fatalf("Resolve = %+v, %v; want not served", e, err)
				}
			} else if err != nil || e.Kind != tt.kind {
				t.Fatalf("Resolve = %+v, %v; want kind %d", e, err, tt.kind)
			}
			if got := strings.Join(args(), "|"); got != tt.args {
				t.Errorf("program ran with %q, want %q", got, tt.args)
			}
			if tt.kind != KindGenerated {
				return
			}
			want := "generated for " + tt.args + "\n"
			b, err := c.Render(e)
			if err != nil || string(b) != want {
				t.Errorf("Render = %q, %v; want %q", b, err, want)
			}
			st, err := c.Peek(e)
			if err != nil || st.Size() != int64(len(want)) || st.Mtime.IsZero() {
				t.Errorf("Stat = %+v, %v", st, err)
			}
			b, err = openCommit(c, e)
			if err != nil || string(b) != want {
				t.Errorf("Open = %q, %v", b, err)
			}
			// Lookup, getattr and open again: one run.
			mustResolve(t, c, tt.name)
			if n := len(args()); n != 1 {
				t.Errorf("program ran %d times, want 1", n)
			}
		})
	}
}

// TestGeneratedNodeNotProvisioned: a node config the program serves is its
// content as is; no root is made for it.
func TestGeneratedNodeNotProvisioned(t *testing.T) {
	c, _ := genCatalog(t, true)
	prov := &recProv{}
	c.opts.Prov = prov
	e := mustResolve(t, c, "C0A80102")
	if _, err := openCommit(c, e); err != nil {
		t.Fatal(err)
	}
	if ensured, peeked := prov.calls(); len(ensured)+len(peeked) != 0 {
		t.Errorf("generated node provisioned: Ensure %v, Peek %v", ensured, peeked)
	}
}
