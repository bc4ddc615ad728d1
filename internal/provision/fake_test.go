package provision

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// fakeOverlays is an Overlays in memory: no root, no overlayfs. It writes
// what it does into the exporter's call log, so one log shows the order of
// overlay and export steps. fail makes the named operation fail.
type fakeOverlays struct {
	ex      *fakeExporter
	mu      sync.Mutex
	mounted map[node.ID]bool
	aside   []string         // set aside by Wipe, not yet discarded
	fail    map[string]error // "mount", "unmount", "wipe", "remove"
	// holdDiscard, when set, makes Discard wait until it is closed: a
	// deletion of a large old layer still running.
	holdDiscard chan struct{}
}

func newFakeOverlays(ex *fakeExporter) *fakeOverlays {
	return &fakeOverlays{ex: ex, mounted: map[node.ID]bool{}, fail: map[string]error{}}
}

func (f *fakeOverlays) do(op string, id node.ID) error {
	f.mu.Lock()
	err := f.fail[op]
	f.mu.Unlock()
	if err != nil {
		f.ex.note(op + " " + id.String() + " failed")
		return err
	}
	f.ex.note(op + " " + id.String())
	return nil
}

func (f *fakeOverlays) MountOver(id node.ID, lower string) (bool, error) {
	f.mu.Lock()
	adopted := f.mounted[id]
	f.mu.Unlock()
	if adopted {
		f.ex.note("adopt " + id.String())
		return true, nil
	}
	if err := f.do("mount", id); err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounted[id] = true
	return false, nil
}

func (f *fakeOverlays) Unmount(id node.ID) error {
	if err := f.do("unmount", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mounted, id)
	return nil
}

func (f *fakeOverlays) Wipe(id node.ID) ([]string, error) {
	if err := f.do("wipe", id); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	dirs := []string{"/o/" + id.String() + "/upper.reset-1", "/o/" + id.String() + "/work.reset-1"}
	f.aside = append(f.aside, dirs...)
	return dirs, nil
}

func (f *fakeOverlays) Discard(dirs []string) error {
	f.mu.Lock()
	hold := f.holdDiscard
	f.mu.Unlock()
	if hold != nil {
		<-hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range dirs {
		f.aside = slices.DeleteFunc(f.aside, func(a string) bool { return a == d })
	}
	f.ex.note("discard " + strings.Join(dirs, " "))
	return nil
}

func (f *fakeOverlays) Leftovers() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.aside), nil
}

func (f *fakeOverlays) isMounted(id node.ID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mounted[id]
}

func (f *fakeOverlays) Remove(id node.ID) error { return f.do("remove", id) }

func (f *fakeOverlays) MountedNodes() (map[node.ID]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[node.ID]bool{}
	for id := range f.mounted {
		out[id] = true
	}
	return out, nil
}

func (f *fakeOverlays) setFail(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = err
}

// fastProv is a Provisioner over fakes: tests of ordering and rollback
// that need neither root nor a kernel.
type fastProv struct {
	*Provisioner
	ex    *fakeExporter
	ov    *fakeOverlays
	reg   *registry.Registry
	clock *testenv.Clock
}

func newFastProv(t *testing.T, guard time.Duration) *fastProv {
	t.Helper()
	reg, err := registry.Open(registry.Options{Dir: filepath.Join(t.TempDir(), "state"), StartFSID: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	ex := newFakeExporter()
	fp := &fastProv{ex: ex, ov: newFakeOverlays(ex), reg: reg, clock: testenv.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))}
	fp.Provisioner = New(Options{Overlay: fp.ov, Exporter: ex, Registry: reg, NodeDir: "/srv/nodes", StartFSID: 100,
		Now: fp.clock.Now, ResetGuard: guard})
	return fp
}

var fastNode = node.Node{ID: node.MustParse("C0A80102")}

// steps is the log of overlay and export calls so far.
func (fp *fastProv) steps() []string { return fp.ex.callLog() }

func TestFastEnsureOrderAndRollback(t *testing.T) {
	tests := []struct {
		name      string
		failOp    string // overlay op to fail, or "export"
		wantErr   bool
		wantSteps []string
		mounted   bool
	}{
		{"ok", "", false, []string{"mount C0A80102", "export C0A80102 start", "export C0A80102 done"}, true},
		{"mount fails: nothing to undo", "mount", true, []string{"mount C0A80102 failed"}, false},
		{"export fails: the mount is undone", "export", true, []string{"mount C0A80102", "export C0A80102 failed", "unmount C0A80102"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp := newFastProv(t, time.Minute)
			injected := errors.New("injected")
			if tt.failOp == "export" {
				fp.ex.failExport = injected
			} else if tt.failOp != "" {
				fp.ov.setFail(tt.failOp, injected)
			}
			_, err := fp.Ensure(context.Background(), fastNode)
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, injected)) {
				t.Fatalf("Ensure = %v, want error %v", err, tt.wantErr)
			}
			if got := fp.steps(); !slices.Equal(got, tt.wantSteps) {
				t.Errorf("steps %q, want %q", got, tt.wantSteps)
			}
			if m, _ := fp.ov.MountedNodes(); m[fastNode.ID] != tt.mounted {
				t.Errorf("mounted = %v, want %v", m[fastNode.ID], tt.mounted)
			}
			rec, _ := fp.reg.Get(fastNode.ID)
			if tt.wantErr && rec.LastError == "" {
				t.Error("failure not recorded in the registry")
			}
			if !tt.wantErr && rec.BootCount != 1 {
				t.Errorf("boot count %d, want 1", rec.BootCount)
			}
			// The next open retries and succeeds once the fault is gone.
			fp.ex.failExport = nil
			fp.ov.setFail(tt.failOp, nil)
			if _, err := fp.Ensure(context.Background(), fastNode); err != nil {
				t.Errorf("retry: %v", err)
			}
			if rec, _ := fp.reg.Get(fastNode.ID); rec.LastError != "" {
				t.Errorf("error %q not cleared by the successful retry", rec.LastError)
			}
		})
	}
}

func TestFastResetOrder(t *testing.T) {
	tests := []struct {
		name      string
		failOp    string
		wantSteps []string
		wantErr   bool
	}{
		{"ok", "", []string{"unexport C0A80102", "unmount C0A80102", "wipe C0A80102", "mount C0A80102", "export C0A80102 start", "export C0A80102 done",
			"discard /o/C0A80102/upper.reset-1 /o/C0A80102/work.reset-1"}, false},
		// The root could not be taken down: it is exported again, untouched.
		{"unmount fails", "unmount", []string{"unexport C0A80102", "unmount C0A80102 failed", "export C0A80102 start", "export C0A80102 done"}, true},
		// The wipe failed, but the node gets its (old) root back at once.
		{"wipe fails", "wipe", []string{"unexport C0A80102", "unmount C0A80102", "wipe C0A80102 failed", "mount C0A80102", "export C0A80102 start", "export C0A80102 done"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp := newFastProv(t, time.Minute)
			if _, err := fp.Ensure(context.Background(), fastNode); err != nil {
				t.Fatal(err)
			}
			fp.ex.clearLog()
			fp.clock.Advance(time.Hour)
			if tt.failOp != "" {
				fp.ov.setFail(tt.failOp, errors.New("injected"))
			}
			err := fp.Reset(context.Background(), fastNode.ID, false)
			fp.Wait()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Reset = %v, want error %v", err, tt.wantErr)
			}
			if got := fp.steps(); !slices.Equal(got, tt.wantSteps) {
				t.Errorf("steps %q, want %q", got, tt.wantSteps)
			}
			// Whatever happened, the node is served: the next open finds
			// it ready and does no work.
			fp.ov.setFail(tt.failOp, nil)
			fp.ex.clearLog()
			if _, err := fp.Ensure(context.Background(), fastNode); err != nil {
				t.Fatal(err)
			}
			if got := fp.steps(); len(got) != 0 {
				t.Errorf("open after reset did work: %q", got)
			}
		})
	}
}

// TestFastWaiterAbandons: an open waiting behind a long operation on its
// node gives up when its context ends; the operation is not disturbed.
func TestFastWaiterAbandons(t *testing.T) {
	fp := newFastProv(t, 0)
	if _, err := fp.Ensure(context.Background(), fastNode); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	fp.ex.setHold(hold)
	fp.ex.clearLog()
	reset := make(chan error, 1)
	go func() { reset <- fp.Reset(context.Background(), fastNode.ID, true) }()
	// The reset holds the node's lock until its export, held here, ends.
	for !slices.Contains(fp.ex.callLog(), "export C0A80102 start") {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	opened := make(chan error, 1)
	go func() { _, err := fp.Ensure(ctx, fastNode); opened <- err }()
	cancel()
	if err := <-opened; !errors.Is(err, context.Canceled) {
		t.Errorf("abandoned open = %v, want context.Canceled", err)
	}
	close(hold)
	if err := <-reset; err != nil {
		t.Errorf("reset = %v", err)
	}
}

// TestFastResetServesBeforeDeleting: the node gets its fresh root, mounted
// and exported, while its old layer is still being deleted; a restart then
// finds the leftovers and deletes them.
func TestFastResetServesBeforeDeleting(t *testing.T) {
	fp := newFastProv(t, time.Minute)
	if _, err := fp.Ensure(context.Background(), fastNode); err != nil {
		t.Fatal(err)
	}
	fp.clock.Advance(time.Hour)
	hold := make(chan struct{})
	fp.ov.holdDiscard = hold
	if err := fp.Reset(context.Background(), fastNode.ID, false); err != nil {
		t.Fatal(err)
	}
	// Reset returned while the deletion is blocked: the node is served.
	if !fp.ov.isMounted(fastNode.ID) || !fp.ex.isExported(fastNode.ID) {
		t.Fatal("reset returned before the fresh root was mounted and exported")
	}
	fp.ex.clearLog()
	if _, err := fp.Ensure(context.Background(), fastNode); err != nil {
		t.Fatal(err)
	}
	if got := fp.steps(); len(got) != 0 {
		t.Errorf("boot during the deletion did work: %q", got)
	}
	// The daemon "dies" here: a new provisioner over the same state finds
	// the old layer and deletes it.
	left, _ := fp.ov.Leftovers()
	if len(left) != 2 {
		t.Fatalf("leftovers %v, want the two dirs set aside", left)
	}
	close(hold)
	fp.Wait()
	fp.ov.aside = left // as a kill -9 would have left them
	p2 := New(Options{Overlay: fp.ov, Exporter: fp.ex, Registry: fp.reg, NodeDir: "/srv/nodes", Now: fp.clock.Now})
	p2.DiscardLeftovers()
	p2.Wait()
	if left, _ := fp.ov.Leftovers(); len(left) != 0 {
		t.Errorf("after restart leftovers %v remain", left)
	}
}

// TestFastOpensRaceReset: 64 opens racing resets are each served while
// the node's root is mounted and exported (the old one before a reset
// starts, or the fresh one after), never in between.
func TestFastOpensRaceReset(t *testing.T) {
	fp := newFastProv(t, 0)
	if _, err := fp.Ensure(context.Background(), fastNode); err != nil {
		t.Fatal(err)
	}
	var bad, served atomic.Int64
	fp.served = func(id node.ID) {
		served.Add(1)
		if !fp.ov.isMounted(id) || !fp.ex.isExported(id) {
			bad.Add(1)
		}
	}
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 20 {
				if _, err := fp.Ensure(context.Background(), fastNode); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 20 {
		if err := fp.Reset(context.Background(), fastNode.ID, true); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	fp.Wait()
	if served.Load() != 64*20 || bad.Load() != 0 {
		t.Errorf("%d opens served, %d of them without a mounted and exported root", served.Load(), bad.Load())
	}
}

// TestFastReleaseGuard: release and release -purge of a node that booted
// within reset_guard are refused unless forced, and change nothing then.
func TestFastReleaseGuard(t *testing.T) {
	tests := []struct {
		name         string
		since        time.Duration
		purge, force bool
		wantErr      error
	}{
		{"release within the guard", time.Second, false, false, ErrRecentBoot},
		{"purge within the guard", time.Second, true, false, ErrRecentBoot},
		{"release within the guard, forced", time.Second, false, true, nil},
		{"purge within the guard, forced", time.Second, true, true, nil},
		{"release after the guard", time.Hour, false, false, nil},
		{"purge after the guard", time.Hour, true, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp := newFastProv(t, 5*time.Minute)
			if _, err := fp.Ensure(context.Background(), fastNode); err != nil {
				t.Fatal(err)
			}
			fp.clock.Advance(tt.since)
			fp.ex.clearLog()
			err := fp.Release(context.Background(), fastNode.ID, tt.purge, tt.force)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Release = %v, want %v", err, tt.wantErr)
			}
			_, known := fp.reg.Get(fastNode.ID)
			if tt.wantErr != nil {
				if got := fp.steps(); len(got) != 0 || !known || !fp.ov.isMounted(fastNode.ID) {
					t.Errorf("refused release did %q (known %v, mounted %v)", got, known, fp.ov.isMounted(fastNode.ID))
				}
				return
			}
			if fp.ov.isMounted(fastNode.ID) || fp.ex.isExported(fastNode.ID) || known == tt.purge {
				t.Errorf("after release: mounted %v, exported %v, known %v", fp.ov.isMounted(fastNode.ID), fp.ex.isExported(fastNode.ID), known)
			}
		})
	}
}
