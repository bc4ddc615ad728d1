package provision

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
	"github.com/pxebootfs/pxebootfs/nfsexport"
	"github.com/pxebootfs/pxebootfs/overlay"
)

// countingExporter records exports in memory. The real exportfs and Ganesha
// paths are tested end to end in e2e; this one lets the tests count calls
// and inject failures.
type countingExporter struct {
	mu      sync.Mutex
	exports map[string]nfsexport.Export
	calls   int
	fail    error
}

func (c *countingExporter) Export(ctx context.Context, e nfsexport.Export) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.fail != nil {
		return c.fail
	}
	c.exports[e.Path] = e
	return nil
}

func (c *countingExporter) Unexport(ctx context.Context, e nfsexport.Export) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.exports, e.Path)
	return nil
}

func (c *countingExporter) Exported(ctx context.Context, e nfsexport.Export) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	got, ok := c.exports[e.Path]
	return ok && got == e, nil
}

func (c *countingExporter) List(ctx context.Context) ([]nfsexport.Export, error) { return nil, nil }
func (c *countingExporter) UsedFSIDs(ctx context.Context) (map[uint32]string, error) {
	return map[uint32]string{100: "/some/other/export"}, nil
}
func (c *countingExporter) Name() string { return "counting" }

type env struct {
	p    *Provisioner
	ex   *countingExporter
	ov   *overlay.Manager
	reg  *registry.Registry
	node string
	dirs overlay.Options
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.RequireRoot(t)
	base, err := os.MkdirTemp("/var/tmp", "pxebootfs-provision-test-")
	if err != nil {
		t.Fatal(err)
	}
	o := overlay.Options{
		Type:       overlay.Overlayfs,
		RootDir:    filepath.Join(base, "root"),
		NodeDir:    filepath.Join(base, "node"),
		OverlayDir: filepath.Join(base, "overlay"),
	}
	for _, d := range []string{o.RootDir, o.NodeDir, o.OverlayDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ov, err := overlay.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(o.NodeDir))
		for _, i := range infos {
			syscall.Unmount(i.Mountpoint, syscall.MNT_DETACH)
		}
		os.RemoveAll(base)
	})
	reg, err := registry.Open(registry.Options{Dir: filepath.Join(base, "state"), StartFSID: 100, MaxNodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	ex := &countingExporter{exports: map[string]nfsexport.Export{}}
	return &env{
		p:  New(Options{Overlay: ov, Exporter: ex, Registry: reg, NodeDir: o.NodeDir, StartFSID: 100}),
		ex: ex, ov: ov, reg: reg, dirs: o,
	}
}

// mk is the node with hex name name; ip must be its address (kept for
// readability of the tables).
func mk(name, ip string) node.Node {
	id := node.MustParse(name)
	if id.Addr().String() != ip {
		panic("mk: " + name + " is not " + ip)
	}
	return node.Node{ID: id}
}

func TestEnsureOnceUnderConcurrency(t *testing.T) {
	e := newEnv(t)
	n := mk("C0A80102", "192.168.1.2")
	var wg sync.WaitGroup
	roots := make(chan node.Root, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.p.Ensure(context.Background(), n)
			if err != nil {
				t.Error(err)
			}
			roots <- r
		}()
	}
	wg.Wait()
	close(roots)
	for r := range roots {
		// 100 is used by another export on the server: skipped.
		if r.FSID != 101 || r.Dir != filepath.Join(e.dirs.NodeDir, "C0A80102") {
			t.Errorf("root %+v", r)
		}
	}
	if e.ex.calls != 1 {
		t.Errorf("%d exports, want 1", e.ex.calls)
	}
	if rec, _ := e.reg.Get(node.MustParse("C0A80102")); rec.BootCount != 64 {
		t.Errorf("boot count %d, want 64", rec.BootCount)
	}
	if got := e.p.Peek(n.ID); got.FSID != 101 {
		t.Errorf("Peek = %+v", got)
	}
	if got := e.p.Peek(mk("C0A80103", "192.168.1.3").ID); got.FSID != 102 {
		t.Errorf("Peek of a new node = %+v, want the next fsid", got)
	}
}

func TestEnsureRollsBackAndRetries(t *testing.T) {
	e := newEnv(t)
	n := mk("C0A80102", "192.168.1.2")
	e.ex.fail = errors.New("exportfs: injected")
	if _, err := e.p.Ensure(context.Background(), n); err == nil {
		t.Fatal("Ensure succeeded with a failing exporter")
	}
	if ok, _ := e.ov.Mounted(node.MustParse("C0A80102")); ok {
		t.Error("mount not rolled back")
	}
	if rec, _ := e.reg.Get(node.MustParse("C0A80102")); rec.LastError == "" {
		t.Error("error not recorded")
	}
	e.ex.fail = nil
	r, err := e.p.Ensure(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := e.ov.Mounted(node.MustParse("C0A80102")); !ok {
		t.Error("not mounted after retry")
	}
	if rec, _ := e.reg.Get(node.MustParse("C0A80102")); rec.LastError != "" || rec.FSID != r.FSID {
		t.Errorf("record after retry: %+v", rec)
	}
}

func TestEnsureMaxNodes(t *testing.T) {
	e := newEnv(t)
	for i, ip := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		if _, err := e.p.Ensure(context.Background(), mk([]string{"0A000001", "0A000002", "0A000003"}[i], ip)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.p.Ensure(context.Background(), mk("0A000004", "10.0.0.4"))
	if !errors.Is(err, registry.ErrFull) {
		t.Fatalf("4th node with max_nodes 3: %v, want ErrFull", err)
	}
	if ok, _ := e.ov.Mounted(node.MustParse("0A000004")); ok {
		t.Error("refused node was mounted")
	}
}

func TestRestore(t *testing.T) {
	e := newEnv(t)
	a, b := mk("0A000001", "10.0.0.1"), mk("0A000002", "10.0.0.2")
	for _, n := range []node.Node{a, b} {
		if _, err := e.p.Ensure(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.ov.Unmount(a.ID); err != nil {
		t.Fatal(err)
	}
	delete(e.ex.exports, filepath.Join(e.dirs.NodeDir, b.ID.String()))
	p2 := New(Options{Overlay: e.ov, Exporter: e.ex, Registry: e.reg, NodeDir: e.dirs.NodeDir})
	ready, err := p2.Restore(context.Background())
	if err != nil || ready != 2 {
		t.Fatalf("Restore = %d, %v", ready, err)
	}
	if ok, _ := e.ov.Mounted(a.ID); !ok {
		t.Error("a not remounted")
	}
	if got := e.ex.exports[filepath.Join(e.dirs.NodeDir, b.ID.String())]; got.FSID != 102 {
		t.Errorf("b re-exported as %+v, want fsid 102", got)
	}
}

// TestInstallOnlyNode: a node known for its install only (fsid 0) is not
// restored, reset or previewed as known; its first boot gives it an fsid
// and a root, keeping its install state; purging it retires no fsid.
func TestInstallOnlyNode(t *testing.T) {
	e := newEnv(t)
	n := mk("0A000005", "10.0.0.5")
	if _, err := e.reg.Change(n.ID, true, func(r *registry.Record) (bool, error) {
		r.Install.State = registry.InstallPending
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if root := e.p.Peek(n.ID); root.Known || root.FSID != 100 {
		t.Fatalf("Peek of an install-only node = %+v, want a preview of fsid 100", root)
	}
	if ready, err := e.p.Restore(context.Background()); err != nil || ready != 0 || len(e.ex.exports) != 0 {
		t.Fatalf("Restore = %d, %v, exports %v", ready, err, e.ex.exports)
	}
	if err := e.p.Reset(context.Background(), n.ID, true); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("Reset of an install-only node: %v", err)
	}
	root, err := e.p.Ensure(context.Background(), n)
	if err != nil || root.FSID != 101 || !root.Known { // 100 is a foreign export's
		t.Fatalf("Ensure = %+v, %v", root, err)
	}
	if rec, _ := e.reg.Get(n.ID); rec.Install.State != registry.InstallPending || rec.FSID != 101 {
		t.Fatalf("record after first boot: %+v", rec)
	}
	m := mk("0A000006", "10.0.0.6")
	if _, err := e.reg.Change(m.ID, true, func(r *registry.Record) (bool, error) { return true, nil }); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Release(context.Background(), m.ID, true, true); err != nil {
		t.Fatalf("purge of an install-only node: %v", err)
	}
	if ret := e.reg.Retired(); len(ret) != 0 {
		t.Fatalf("retired %v", ret)
	}
}

// Ensure is Prepare and, when it succeeds, Booted: a whole served open, as
// the filesystem makes one.
func (p *Provisioner) Ensure(ctx context.Context, n node.Node) (node.Root, error) {
	root, err := p.Prepare(ctx, n)
	if err == nil {
		p.Booted(n)
	}
	return root, err
}
