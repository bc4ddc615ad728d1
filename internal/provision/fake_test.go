package provision

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

// fakeOverlays is an Overlays in memory: no root, no overlayfs. It writes
// what it does into the exporter's call log, so one log shows the order of
// overlay and export steps. fail makes the named operation fail.
type fakeOverlays struct {
	ex      *fakeExporter
	mu      sync.Mutex
	mounted map[node.ID]bool
	fail    map[string]error // "mount", "unmount", "wipe", "remove"
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

func (f *fakeOverlays) Mount(id node.ID) (bool, error) {
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

func (f *fakeOverlays) Wipe(id node.ID) error   { return f.do("wipe", id) }
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
	clock *clock
}

func newFastProv(t *testing.T, guard time.Duration) *fastProv {
	t.Helper()
	reg, err := registry.Open(registry.Options{Dir: filepath.Join(t.TempDir(), "state"), StartFSID: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	ex := newFakeExporter()
	fp := &fastProv{ex: ex, ov: newFakeOverlays(ex), reg: reg, clock: &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}}
	fp.Provisioner = New(Options{Overlay: fp.ov, Exporter: ex, Registry: reg, NodeDir: "/srv/nodes", StartFSID: 100,
		Now: fp.clock.now, ResetGuard: guard})
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
		{"ok", "", []string{"unexport C0A80102", "unmount C0A80102", "wipe C0A80102", "mount C0A80102", "export C0A80102 start", "export C0A80102 done"}, false},
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
			fp.clock.advance(time.Hour)
			if tt.failOp != "" {
				fp.ov.setFail(tt.failOp, errors.New("injected"))
			}
			err := fp.Reset(context.Background(), fastNode.ID, false)
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
	reset := make(chan error, 1)
	go func() { reset <- fp.Reset(context.Background(), fastNode.ID, true) }()
	for !slices.Contains(fp.ex.callLog(), "export C0A80102 start") || len(fp.ex.callLog()) < 3 {
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
