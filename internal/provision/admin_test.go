package provision

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
	"github.com/pxebootfs/pxebootfs/nfsexport"
	"github.com/pxebootfs/pxebootfs/overlay"
)

// fakeExporter records exports in memory. hold, when set, makes Export
// block until it is closed, to catch work that overlaps a provisioning.
type fakeExporter struct {
	mu         sync.Mutex
	set        map[nfsexport.Export]bool
	calls      []string
	hold       chan struct{}
	failExport error // Export fails with it (fast tests)
}

// note adds an entry to the call log (fakeOverlays writes its steps here).
func (f *fakeExporter) note(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeExporter) clearLog() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// isExported reports whether some export of id's root is in place.
func (f *fakeExporter) isExported(id node.ID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for e := range f.set {
		if filepath.Base(e.Path) == id.String() {
			return true
		}
	}
	return false
}

func (f *fakeExporter) setHold(c chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = c
}

func newFakeExporter() *fakeExporter { return &fakeExporter{set: map[nfsexport.Export]bool{}} }

func (f *fakeExporter) Export(ctx context.Context, e nfsexport.Export) error {
	f.mu.Lock()
	if f.failExport != nil {
		f.calls = append(f.calls, "export "+filepath.Base(e.Path)+" failed")
		f.mu.Unlock()
		return f.failExport
	}
	hold := f.hold
	f.calls = append(f.calls, "export "+filepath.Base(e.Path)+" start")
	f.mu.Unlock()
	if hold != nil {
		<-hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set[e] = true
	f.calls = append(f.calls, "export "+filepath.Base(e.Path)+" done")
	return nil
}

func (f *fakeExporter) Unexport(ctx context.Context, e nfsexport.Export) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for x := range f.set {
		if x.Path == e.Path && x.Client == e.Client {
			delete(f.set, x)
		}
	}
	f.calls = append(f.calls, "unexport "+filepath.Base(e.Path))
	return nil
}

func (f *fakeExporter) Exported(ctx context.Context, e nfsexport.Export) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set[e], nil
}

func (f *fakeExporter) List(ctx context.Context) ([]nfsexport.Export, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []nfsexport.Export
	for e := range f.set {
		out = append(out, e)
	}
	return out, nil
}

func (f *fakeExporter) UsedFSIDs(ctx context.Context) (map[uint32]string, error) {
	return map[uint32]string{}, nil
}

func (f *fakeExporter) Name() string { return "fake" }

func (f *fakeExporter) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// countingMetrics counts what the provisioner reports.
type countingMetrics struct {
	mu                     sync.Mutex
	provisioned, resets    int
	provisionErr, resetErr int
}

func (m *countingMetrics) Provisioned(d time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.provisioned++
	if err != nil {
		m.provisionErr++
	}
}

func (m *countingMetrics) Reset(reason string, d time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resets++
	if err != nil {
		m.resetErr++
	}
}

func (m *countingMetrics) counts() (int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.provisioned, m.resets
}

type testProv struct {
	*Provisioner
	ex       *fakeExporter
	reg      *registry.Registry
	clock    *testenv.Clock
	met      *countingMetrics
	nodes    string
	overlays string
	opts     Options
}

// newTestProv makes a provisioner over a real overlay manager (on disk, not
// tmpfs) and a fake exporter. Every mount is detached at the end.
func newTestProv(t *testing.T, guard time.Duration, onBoot bool) *testProv {
	t.Helper()
	testenv.RequireRoot(t)
	base := t.TempDir()
	tp := &testProv{
		ex:       newFakeExporter(),
		clock:    testenv.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)),
		met:      &countingMetrics{},
		nodes:    filepath.Join(base, "nodes"),
		overlays: filepath.Join(base, "overlays"),
	}
	root := filepath.Join(base, "root")
	for _, d := range []string{filepath.Join(root, "etc"), tp.nodes, tp.overlays} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "golden"), []byte("golden\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(base))
		for _, m := range infos {
			if err := syscall.Unmount(m.Mountpoint, syscall.MNT_DETACH); err != nil {
				t.Errorf("cleanup: unmount %s: %v", m.Mountpoint, err)
			}
		}
	})
	ov, err := overlay.New(overlay.Options{RootDir: root, NodeDir: tp.nodes, OverlayDir: tp.overlays})
	if err != nil {
		t.Fatal(err)
	}
	tp.reg, err = registry.Open(registry.Options{Dir: filepath.Join(base, "state"), StartFSID: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.reg.Close() })
	tp.opts = Options{Overlay: ov, Exporter: tp.ex, Registry: tp.reg, NodeDir: tp.nodes, StartFSID: 100,
		Now: tp.clock.Now, ResetGuard: guard, ResetOnBoot: onBoot, Metrics: tp.met}
	tp.Provisioner = New(tp.opts)
	t.Cleanup(tp.Wait) // background deletions end before the temp dir goes
	return tp
}

func testNode(last byte) node.Node {
	return node.Node{ID: node.FromUint32(0xC0A80100 | uint32(last))}
}

func (tp *testProv) ensure(t *testing.T, n node.Node) node.Root {
	t.Helper()
	root, err := tp.Ensure(context.Background(), n)
	if err != nil {
		t.Fatalf("Ensure %s: %v", n.ID, err)
	}
	return root
}

// writeInRoot writes a file through the node's mounted root, as the node would.
func (tp *testProv) writeInRoot(t *testing.T, n node.Node, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(tp.nodes, n.ID.String(), name), []byte("node data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (tp *testProv) hasFile(n node.Node, name string) bool {
	_, err := os.Stat(filepath.Join(tp.nodes, n.ID.String(), name))
	return err == nil
}

func (tp *testProv) status(t *testing.T, n node.Node) NodeStatus {
	t.Helper()
	for _, s := range tp.Status(context.Background()) {
		if s.ID == n.ID {
			return s
		}
	}
	t.Fatalf("%s not in Status", n.ID)
	return NodeStatus{}
}

func isTrue(b *bool) bool { return b != nil && *b }

func TestResetGuard(t *testing.T) {
	tests := []struct {
		name    string
		guard   time.Duration
		since   time.Duration // since the last boot
		force   bool
		node    string // "" means the booted node
		wantErr error
	}{
		{"booted within the guard", 300 * time.Second, 10 * time.Second, false, "", ErrRecentBoot},
		{"booted within the guard but forced", 300 * time.Second, 10 * time.Second, true, "", nil},
		{"booted before the guard", 300 * time.Second, 301 * time.Second, false, "", nil},
		{"guard 0", 0, 0, false, "", nil},
		{"unknown node", 300 * time.Second, time.Hour, true, "C0A801FF", ErrUnknownNode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTestProv(t, tt.guard, false)
			n := testNode(2)
			before := tp.ensure(t, n)
			tp.writeInRoot(t, n, "data")
			tp.clock.Advance(tt.since)
			id := n.ID
			if tt.node != "" {
				id = node.MustParse(tt.node)
			}
			err := tp.Reset(context.Background(), id, tt.force)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Reset = %v, want %v", err, tt.wantErr)
			}
			wiped := !tp.hasFile(n, "data")
			if wiped != (err == nil) {
				t.Errorf("data wiped = %v after Reset = %v", wiped, err)
			}
			st := tp.status(t, n)
			if !isTrue(st.Mounted) || !isTrue(st.Exported) || st.FSID != before.FSID {
				t.Errorf("after reset: mounted %v exported %v fsid %d, want both and fsid %d", st.Mounted, st.Exported, st.FSID, before.FSID)
			}
			if !tp.hasFile(n, "etc/golden") {
				t.Error("golden root not visible after reset")
			}
		})
	}
}

func TestResetWipesUpperKeepsFSID(t *testing.T) {
	tp := newTestProv(t, 300*time.Second, false)
	n1, n2 := testNode(2), testNode(3)
	r1 := tp.ensure(t, n1)
	tp.ensure(t, n2)
	tp.writeInRoot(t, n1, "one")
	tp.writeInRoot(t, n2, "two")
	tp.clock.Advance(time.Hour)
	if err := tp.Reset(context.Background(), n1.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tp.overlays, n1.ID.String(), "upper", "one")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("upper of %s still has the file: %v", n1.ID, err)
	}
	tp.Wait() // the old layers are deleted in the background
	aside, _ := filepath.Glob(filepath.Join(tp.overlays, n1.ID.String(), "*.reset-*"))
	if len(aside) != 0 {
		t.Errorf("old layers left: %v", aside)
	}
	if !tp.hasFile(n2, "two") {
		t.Error("reset of one node touched another")
	}
	r := tp.ensure(t, n1)
	if r.FSID != r1.FSID {
		t.Errorf("fsid %d after reset, want %d", r.FSID, r1.FSID)
	}
	if want := (nfsexport.Export{Path: filepath.Join(tp.nodes, n1.ID.String()), Client: n1.ID.Addr(), FSID: r1.FSID}); !tp.ex.set[want] {
		t.Errorf("not exported as %v after reset", want)
	}
	if _, resets := tp.met.counts(); resets != 1 {
		t.Errorf("%d resets reported, want 1", resets)
	}
}

func TestRelease(t *testing.T) {
	tests := []struct {
		name  string
		purge bool
	}{
		{"release", false},
		{"purge", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTestProv(t, 300*time.Second, false)
			n := testNode(2)
			r1 := tp.ensure(t, n)
			tp.writeInRoot(t, n, "data")
			tp.clock.Advance(time.Hour) // past reset_guard: the node is down
			if err := tp.Release(context.Background(), n.ID, tt.purge, false); err != nil {
				t.Fatal(err)
			}
			if m, _ := mountinfo.Mounted(filepath.Join(tp.nodes, n.ID.String())); m {
				t.Error("still mounted")
			}
			if len(tp.ex.set) != 0 {
				t.Errorf("still exported: %v", tp.ex.set)
			}
			_, known := tp.reg.Get(n.ID)
			_, dataErr := os.Stat(filepath.Join(tp.overlays, n.ID.String(), "upper", "data"))
			if known == tt.purge || (dataErr == nil) == tt.purge {
				t.Errorf("purge=%v: still known %v, data kept %v", tt.purge, known, dataErr == nil)
			}
			// The next boot provisions it again.
			r2 := tp.ensure(t, n)
			if tt.purge {
				if r2.FSID == r1.FSID || !slices.Contains(tp.reg.Retired(), r1.FSID) {
					t.Errorf("purged node got fsid %d again (retired %v)", r2.FSID, tp.reg.Retired())
				}
				if tp.hasFile(n, "data") {
					t.Error("purged data is back")
				}
			} else if r2.FSID != r1.FSID || !tp.hasFile(n, "data") {
				t.Errorf("released node: fsid %d (want %d), data kept %v", r2.FSID, r1.FSID, tp.hasFile(n, "data"))
			}
		})
	}
}

func TestReleaseUnknown(t *testing.T) {
	tp := newTestProv(t, 0, false)
	if err := tp.Release(context.Background(), node.MustParse("C0A801FF"), true, false); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("Release of an unknown node = %v, want ErrUnknownNode", err)
	}
}

// reset_on_boot wipes on a boot after reset_guard, and only once however
// many opens that boot makes.
func TestResetOnBoot(t *testing.T) {
	tp := newTestProv(t, 300*time.Second, true)
	n := testNode(2)
	r1 := tp.ensure(t, n)
	tp.writeInRoot(t, n, "data")

	tp.clock.Advance(10 * time.Second)
	tp.ensure(t, n) // a retry within the same boot
	if !tp.hasFile(n, "data") {
		t.Fatal("wiped by an open within reset_guard")
	}
	tp.writeInRoot(t, n, "data")
	tp.clock.Advance(300 * time.Second)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tp.Ensure(context.Background(), n); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if tp.hasFile(n, "data") {
		t.Error("not wiped on a boot after reset_guard")
	}
	if _, resets := tp.met.counts(); resets != 1 {
		t.Errorf("%d resets for one boot, want 1", resets)
	}
	if r := tp.ensure(t, n); r.FSID != r1.FSID {
		t.Errorf("fsid %d after reset_on_boot, want %d", r.FSID, r1.FSID)
	}
	// Switched off by a reload: no more wipes.
	tp.SetResetPolicy(300*time.Second, false)
	tp.writeInRoot(t, n, "data")
	tp.clock.Advance(time.Hour)
	tp.ensure(t, n)
	if !tp.hasFile(n, "data") {
		t.Error("wiped with reset_on_boot off")
	}
}

// A reset asked for while the node is being provisioned waits for the
// provisioning to finish instead of racing it.
func TestResetWaitsForProvisioning(t *testing.T) {
	tp := newTestProv(t, 0, false)
	n := testNode(2)
	if _, _, err := tp.reg.Allocate(n.ID, "", nil); err != nil {
		t.Fatal(err)
	}
	tp.ex.hold = make(chan struct{})
	ensured := make(chan error, 1)
	go func() {
		_, err := tp.Ensure(context.Background(), n)
		ensured <- err
	}()
	for !slices.Contains(tp.ex.callLog(), "export "+n.ID.String()+" start") {
		time.Sleep(time.Millisecond)
	}
	reset := make(chan error, 1)
	go func() { reset <- tp.Reset(context.Background(), n.ID, true) }()
	// Give the reset every chance to overtake; it must not.
	time.Sleep(50 * time.Millisecond)
	close(tp.ex.hold)
	if err := <-ensured; err != nil {
		t.Fatal(err)
	}
	if err := <-reset; err != nil {
		t.Fatal(err)
	}
	want := []string{"export " + n.ID.String() + " start", "export " + n.ID.String() + " done", "unexport " + n.ID.String(), "export " + n.ID.String() + " start", "export " + n.ID.String() + " done"}
	if got := tp.ex.callLog(); !slices.Equal(got, want) {
		t.Errorf("exporter calls %q, want %q", got, want)
	}
}

func TestStatus(t *testing.T) {
	tp := newTestProv(t, 0, false)
	n1, n2 := testNode(2), testNode(3)
	tp.ensure(t, n1)
	tp.ensure(t, n2)
	if err := tp.Release(context.Background(), n2.ID, false, true); err != nil {
		t.Fatal(err)
	}
	st := tp.Status(context.Background())
	if len(st) != 2 {
		t.Fatalf("Status has %d nodes, want 2", len(st))
	}
	if s := st[0]; s.ID != n1.ID || !isTrue(s.Mounted) || !isTrue(s.Exported) || s.BootCount != 1 || s.ID.Addr().String() != "192.168.1.2" {
		t.Errorf("%+v: want %s mounted, exported, booted once", s, n1.ID)
	}
	if s := st[1]; s.ID != n2.ID || s.Mounted == nil || *s.Mounted || s.Exported == nil || *s.Exported {
		t.Errorf("%+v: want %s known but neither mounted nor exported", s, n2.ID)
	}
	// A read-only view knows the records but not the roots.
	ro := New(Options{Registry: tp.reg, NodeDir: tp.nodes})
	for _, s := range ro.Status(context.Background()) {
		if s.Mounted != nil || s.Exported != nil {
			t.Errorf("read-only Status claims to know: %+v", s)
		}
	}
	// export = none: exported is unknown, not false.
	none := New(Options{Overlay: tp.opts.Overlay, Exporter: nfsexport.None{}, Registry: tp.reg, NodeDir: tp.nodes})
	if s := none.Status(context.Background())[0]; s.Exported != nil || !isTrue(s.Mounted) {
		t.Errorf("with export none: %+v", s)
	}
}
