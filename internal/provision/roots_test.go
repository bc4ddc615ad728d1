package provision

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/roots"
)

// rootsProv is testProv over named roots: a store with generations instead
// of one root_dir, every node asking for root "os".
type rootsProv struct {
	*testProv
	store *roots.Store
	src   string // the tree imported as the next generation
}

func newRootsProv(t *testing.T) *rootsProv {
	t.Helper()
	tp := newTestProv(t, 0, false)
	base := filepath.Dir(tp.nodes)
	rp := &rootsProv{testProv: tp, src: filepath.Join(base, "src")}
	// The store keeps the legacy root_dir too: nodes without a pin.
	rp.store = roots.New(filepath.Join(base, "roots"), filepath.Join(base, "state"), filepath.Join(base, "root"))
	for _, d := range []string{"etc", "sbin"} {
		if err := os.MkdirAll(filepath.Join(rp.src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rp.src, "sbin", "init"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Sealed generations are bind mounts under base: unmounted by
	// newTestProv's cleanup, which detaches every mount under base.
	rp.opts.Roots = rp.store
	rp.opts.RootFor = func(node.ID) string { return "os" }
	rp.Provisioner = New(rp.opts)
	return rp
}

// importGen imports src with /etc/pxebootfs-root saying label.
func (rp *rootsProv) importGen(t *testing.T, label string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(rp.src, "etc", "pxebootfs-root"), []byte(label+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := rp.store.Import(context.Background(), roots.ImportOptions{Name: "os", Source: rp.src})
	if err != nil || !res.Created {
		t.Fatalf("import %s: %+v, %v", label, res, err)
	}
	return res.Gen
}

// sees is what node n's root says it is.
func (rp *rootsProv) sees(t *testing.T, n node.Node) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(rp.nodes, n.ID.String(), "etc", "pxebootfs-root"))
	if err != nil {
		t.Fatalf("%s: %v", n.ID, err)
	}
	return string(b[:len(b)-1])
}

func (rp *rootsProv) pinOf(t *testing.T, n node.Node) roots.Pin {
	t.Helper()
	rec, ok := rp.reg.Get(n.ID)
	if !ok {
		t.Fatalf("%s not registered", n.ID)
	}
	return roots.Pin{Root: rec.Root, Gen: rec.RootGen}
}

// TestRootGenerations: a node stays on the generation it was made over
// through a daemon kill and a reboot while another is imported and made
// current; new nodes get the current one; a reset moves a node (same
// fsid); `use` rolls new nodes back; pruning keeps a generation while a
// node is pinned to it.
func TestRootGenerations(t *testing.T) {
	rp := newRootsProv(t)
	ctx := context.Background()
	gen1 := rp.importGen(t, "gen-1")
	a := testNode(2)
	rootA := rp.ensure(t, a)
	if rootA.RootName != "os" || rootA.RootGen != gen1 || rp.sees(t, a) != "gen-1" {
		t.Fatalf("A: root %+v sees %q, want os/%s gen-1", rootA, rp.sees(t, a), gen1)
	}
	rp.writeInRoot(t, a, "heartbeat")

	gen2 := rp.importGen(t, "gen-2")
	if rp.sees(t, a) != "gen-1" {
		t.Fatal("A's root changed under it when gen 2 was imported")
	}

	// The daemon is killed: the mounts stay; a new daemon adopts them.
	rp.Provisioner = New(rp.opts)
	if n, err := rp.Restore(ctx); err != nil || n != 1 {
		t.Fatalf("restore after a kill: %d, %v", n, err)
	}
	// A reboot: no mounts and no seals are left; the next start remounts
	// A over gen 1, its own data intact.
	rebootSim(t, filepath.Dir(rp.nodes))
	if err := rp.store.SealAll(); err != nil {
		t.Fatal(err)
	}
	rp.Provisioner = New(rp.opts)
	if n, err := rp.Restore(ctx); err != nil || n != 1 {
		t.Fatalf("restore after a reboot: %d, %v", n, err)
	}
	if rp.sees(t, a) != "gen-1" || !rp.hasFile(a, "heartbeat") || rp.pinOf(t, a).Gen != gen1 {
		t.Fatalf("A after the reboot sees %q (heartbeat kept: %v), pinned to %v; want gen-1, kept, %s", rp.sees(t, a), rp.hasFile(a, "heartbeat"), rp.pinOf(t, a), gen1)
	}

	pins := func() roots.Pins {
		out := roots.Pins{}
		for _, r := range rp.reg.All() {
			p := roots.Pin{Root: r.Root, Gen: r.RootGen}
			out[p] = append(out[p], r.ID.String())
		}
		return out
	}
	if got, err := rp.store.Prune(roots.Policy{}, pins(), time.Now().Add(time.Hour)); err != nil || len(got) != 0 {
		t.Fatalf("prune removed %v (%v) while A is pinned to gen 1", got, err)
	}

	b := testNode(3)
	if r := rp.ensure(t, b); r.RootGen != gen2 || rp.sees(t, b) != "gen-2" {
		t.Errorf("new node B: %+v sees %q, want %s", r, rp.sees(t, b), gen2)
	}

	// Roll back: the next new node gets gen 1.
	if _, err := rp.store.Use("os", gen1, time.Now()); err != nil {
		t.Fatal(err)
	}
	c := testNode(4)
	if r := rp.ensure(t, c); r.RootGen != gen1 {
		t.Errorf("new node C after use gen 1: %+v", r)
	}
	if _, err := rp.store.Use("os", gen2, time.Now()); err != nil {
		t.Fatal(err)
	}

	// A reset moves A to gen 2 with its fsid; its layer is fresh.
	if err := rp.Reset(ctx, a.ID, true); err != nil {
		t.Fatal(err)
	}
	if r := rp.ensure(t, a); r.FSID != rootA.FSID || r.RootGen != gen2 || rp.sees(t, a) != "gen-2" || rp.hasFile(a, "heartbeat") {
		t.Errorf("A after reset: %+v sees %q; want fsid %d on %s, fresh", r, rp.sees(t, a), rootA.FSID, gen2)
	}
	if err := rp.Reset(ctx, c.ID, true); err != nil {
		t.Fatal(err)
	}
	got, err := rp.store.Prune(roots.Policy{}, pins(), time.Now().Add(time.Hour))
	if err != nil || len(got["os"]) != 1 || got["os"][0] != gen1 {
		t.Errorf("prune once nobody is on gen 1: %v, %v", got, err)
	}
}

// TestRootDirMigration: a node made over root_dir before named roots were
// configured stays on root_dir (its record has no pin) when the config
// gains roots_dir and root, through a restart, while new nodes get the
// named root; a reset moves it.
func TestRootDirMigration(t *testing.T) {
	tp := newTestProv(t, 0, false)
	old := testNode(2)
	tp.ensure(t, old)
	tp.writeInRoot(t, old, "mine")

	// Upgrade: the same registry and mounts, now with named roots.
	rp := &rootsProv{testProv: tp, src: filepath.Join(filepath.Dir(tp.nodes), "src")}
	rp.store = roots.New(filepath.Join(filepath.Dir(tp.nodes), "roots"), filepath.Join(filepath.Dir(tp.nodes), "state"), filepath.Join(filepath.Dir(tp.nodes), "root"))
	os.MkdirAll(filepath.Join(rp.src, "etc"), 0o755)
	os.MkdirAll(filepath.Join(rp.src, "sbin"), 0o755)
	os.WriteFile(filepath.Join(rp.src, "sbin", "init"), []byte("#!/bin/sh\n"), 0o755)
	gen := rp.importGen(t, "named")
	rp.opts.Roots = rp.store
	rp.opts.RootFor = func(node.ID) string { return "os" }
	rebootSim(t, filepath.Dir(tp.nodes))
	rp.Provisioner = New(rp.opts)
	if n, err := rp.Restore(context.Background()); err != nil || n != 1 {
		t.Fatalf("restore: %d, %v", n, err)
	}
	if !rp.hasFile(old, "mine") || !rp.pinOf(t, old).IsLegacy() {
		t.Fatalf("the old node lost its root_dir layer: file %v, pin %v", rp.hasFile(old, "mine"), rp.pinOf(t, old))
	}
	if b, _ := os.ReadFile(filepath.Join(rp.nodes, old.ID.String(), "etc", "golden")); string(b) != "golden\n" {
		t.Errorf("the old node's root is not root_dir: etc/golden = %q", b)
	}
	newNode := testNode(3)
	if r := rp.ensure(t, newNode); r.RootGen != gen {
		t.Errorf("new node: %+v, want %s", r, gen)
	}
	if r := rp.ensure(t, old); r.RootName != roots.Legacy || r.RootGen != roots.LegacyGen {
		t.Errorf("old node's template root: %+v, want root_dir/dir", r)
	}
	if err := rp.Reset(context.Background(), old.ID, true); err != nil {
		t.Fatal(err)
	}
	if rp.pinOf(t, old).Gen != gen || rp.sees(t, old) != "named" {
		t.Errorf("old node after reset: pin %v, sees %q", rp.pinOf(t, old), rp.sees(t, old))
	}
}

// rebootSim removes every mount under base, newest first, as a reboot
// does (the overlays, then the seals of generations they were made over).
func rebootSim(t *testing.T, base string) {
	t.Helper()
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(base))
	if err != nil {
		t.Fatal(err)
	}
	for i := len(infos) - 1; i >= 0; i-- {
		if err := syscall.Unmount(infos[i].Mountpoint, 0); err != nil {
			t.Fatalf("unmount %s: %v", infos[i].Mountpoint, err)
		}
	}
}
