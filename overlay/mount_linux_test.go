package overlay

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

var (
	nodeA = node.MustParse("C0A80102")
	nodeB = node.MustParse("C0A80103")
)

func TestMountCopyOnWrite(t *testing.T) {
	testenv.RequireRoot(t)
	m := newTestManager(t)
	p := mustPaths(t, m, nodeA)
	if adopted := mountNode(t, m, nodeA); adopted {
		t.Fatal("first Mount reported adopted")
	}

	if got := readFile(t, filepath.Join(p.Mount, goldenFile)); got != goldenContent {
		t.Errorf("golden file through the overlay = %q, want %q", got, goldenContent)
	}
	testenv.WriteFile(t, filepath.Join(p.Mount, "new.txt"), "node\n")
	testenv.WriteFile(t, filepath.Join(p.Mount, goldenFile), "changed\n")

	if got := readFile(t, filepath.Join(p.Upper, "new.txt")); got != "node\n" {
		t.Errorf("upper new.txt = %q", got)
	}
	if got := readFile(t, filepath.Join(p.Upper, goldenFile)); got != "changed\n" {
		t.Errorf("upper copy of golden file = %q", got)
	}
	if got := readFile(t, filepath.Join(p.Lower, goldenFile)); got != goldenContent {
		t.Errorf("golden root changed: %q", got)
	}
	if exists(t, filepath.Join(p.Lower, "new.txt")) {
		t.Error("new file reached the golden root")
	}

	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{p.Upper, 0o755}, {p.Work, 0o700}, {filepath.Dir(p.Upper), 0o755}} {
		fi, err := os.Stat(d.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != d.mode {
			t.Errorf("%s has mode %v, want %v", d.path, fi.Mode().Perm(), d.mode)
		}
	}
	if mounted, err := m.Mounted(nodeA); !mounted || err != nil {
		t.Errorf("Mounted = %v, %v; want true, nil", mounted, err)
	}
	if err := m.Unmount(nodeA); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	if mounted, err := m.Mounted(nodeA); mounted || err != nil {
		t.Errorf("after Unmount, Mounted = %v, %v; want false, nil", mounted, err)
	}
}

func TestNodesAreIsolated(t *testing.T) {
	testenv.RequireRoot(t)
	m := newTestManager(t)
	pa, pb := mustPaths(t, m, nodeA), mustPaths(t, m, nodeB)
	mountNode(t, m, nodeA)
	mountNode(t, m, nodeB)

	testenv.WriteFile(t, filepath.Join(pa.Mount, "only-a"), "a\n")
	testenv.WriteFile(t, filepath.Join(pa.Mount, goldenFile), "a's motd\n")
	if err := os.Remove(filepath.Join(pb.Mount, goldenFile)); err != nil {
		t.Fatal(err)
	}

	if exists(t, filepath.Join(pb.Mount, "only-a")) {
		t.Error("B sees A's new file")
	}
	if exists(t, filepath.Join(pb.Mount, goldenFile)) {
		t.Error("B still sees the golden file it deleted")
	}
	if got := readFile(t, filepath.Join(pa.Mount, goldenFile)); got != "a's motd\n" {
		t.Errorf("A's golden file = %q", got)
	}
	if got := readFile(t, filepath.Join(pa.Lower, goldenFile)); got != goldenContent {
		t.Errorf("golden root changed: %q", got)
	}
}

func TestMountTwiceAdopts(t *testing.T) {
	testenv.RequireRoot(t)
	o := testLayout(t)
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	p := mustPaths(t, m, nodeA)
	mountNode(t, m, nodeA)
	if adopted := mountNode(t, m, nodeA); !adopted {
		t.Error("second Mount did not adopt")
	}
	// A new Manager stands for a restarted daemon.
	restarted, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if adopted := mountNode(t, restarted, nodeA); !adopted {
		t.Error("Mount after restart did not adopt")
	}
	if n := mountsAt(t, p.Mount); n != 1 {
		t.Errorf("%d mounts at %s, want 1", n, p.Mount)
	}
}

func TestConcurrentMount(t *testing.T) {
	testenv.RequireRoot(t)
	m := newTestManager(t)
	p := mustPaths(t, m, nodeA)
	t.Cleanup(func() { detachAll(t, p.Mount) })

	const n = 8
	var wg sync.WaitGroup
	adopted := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { adopted[i], errs[i] = m.Mount(nodeA) })
	}
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Mount %d: %v", i, errs[i])
		}
		if !adopted[i] {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d Mounts mounted, want exactly 1 (the rest adopt)", fresh)
	}
	if got := mountsAt(t, p.Mount); got != 1 {
		t.Errorf("%d mounts at %s, want 1", got, p.Mount)
	}
}

// TestRemountSameUpper: with index=on the upper is bound to its lower;
// mounting it again over the same lower must keep working and keep the data.
func TestRemountSameUpper(t *testing.T) {
	testenv.RequireRoot(t)
	m := newTestManager(t)
	p := mustPaths(t, m, nodeA)
	for round := range 3 {
		if adopted := mountNode(t, m, nodeA); adopted {
			t.Fatalf("round %d: Mount adopted after Unmount", round)
		}
		for r := range round {
			if got := readFile(t, filepath.Join(p.Mount, fmt.Sprintf("round-%d", r))); got != "kept\n" {
				t.Errorf("round %d: file from round %d = %q", round, r, got)
			}
		}
		testenv.WriteFile(t, filepath.Join(p.Mount, fmt.Sprintf("round-%d", round)), "kept\n")
		if err := m.Unmount(nodeA); err != nil {
			t.Fatalf("round %d: Unmount: %v", round, err)
		}
	}
}

func TestWipe(t *testing.T) {
	testenv.RequireRoot(t)
	m := newTestManager(t)
	p := mustPaths(t, m, nodeA)
	mountNode(t, m, nodeA)
	testenv.WriteFile(t, filepath.Join(p.Mount, "junk"), "x\n")
	testenv.WriteFile(t, filepath.Join(p.Mount, goldenFile), "changed\n")

	_, err := m.Wipe(nodeA)
	wantErr(t, err, "refusing while overlay is mounted")
	if !exists(t, filepath.Join(p.Upper, "junk")) {
		t.Fatal("refused Wipe still deleted data")
	}

	if err := m.Unmount(nodeA); err != nil {
		t.Fatal(err)
	}
	// Left over from a Wipe that was interrupted before deleting.
	stale := filepath.Join(filepath.Dir(p.Upper), "upper.reset-1")
	if err := os.MkdirAll(filepath.Join(stale, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	aside, err := m.Wipe(nodeA)
	if err != nil {
		t.Fatalf("Wipe: %v", err)
	}
	if len(aside) != 3 || !slices.Contains(aside, stale) {
		t.Errorf("Wipe set aside %v, want upper, work and the stale %s", aside, stale)
	}
	if left, err := m.Leftovers(); err != nil || !slices.Equal(left, aside) {
		t.Errorf("Leftovers = %v, %v; want %v", left, err, aside)
	}
	if !exists(t, filepath.Join(stale, "x")) {
		t.Error("Wipe deleted data itself; deleting is Discard's job")
	}
	if err := m.Discard(append(aside, p.Upper, p.Mount, filepath.Join(m.overlayDir, "x.reset-1"))); err == nil {
		t.Error("Discard accepted paths no reset set aside")
	}
	if err := m.Discard(aside); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	entries, err := os.ReadDir(filepath.Dir(p.Upper))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if fmt.Sprint(names) != "[upper work]" {
		t.Errorf("node overlay dir holds %v after Wipe, want [upper work]", names)
	}
	if entries, _ := os.ReadDir(p.Upper); len(entries) != 0 {
		t.Errorf("upper not empty after Wipe: %v", entries)
	}
	if fi, err := os.Stat(p.Work); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("work after Wipe: %v, %v", fi, err)
	}

	mountNode(t, m, nodeA)
	if got := readFile(t, filepath.Join(p.Mount, goldenFile)); got != goldenContent {
		t.Errorf("after Wipe the node sees %q, want the golden %q", got, goldenContent)
	}
	if exists(t, filepath.Join(p.Mount, "junk")) {
		t.Error("after Wipe the node still has its old file")
	}
}

func TestRemove(t *testing.T) {
	testenv.RequireRoot(t)
	m := newTestManager(t)
	p := mustPaths(t, m, nodeA)
	mountNode(t, m, nodeA)
	testenv.WriteFile(t, filepath.Join(p.Mount, "data"), "x\n")

	wantErr(t, m.Remove(nodeA), "refusing while overlay is mounted")
	if err := m.Unmount(nodeA); err != nil {
		t.Fatal(err)
	}

	// Something written into the bare mount point: leave everything.
	testenv.WriteFile(t, filepath.Join(p.Mount, "stray"), "")
	wantErr(t, m.Remove(nodeA), "remove mount point")
	if !exists(t, filepath.Join(p.Upper, "data")) {
		t.Fatal("refused Remove deleted the upper dir")
	}
	if err := os.Remove(filepath.Join(p.Mount, "stray")); err != nil {
		t.Fatal(err)
	}

	if err := m.Remove(nodeA); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, d := range []string{p.Mount, filepath.Dir(p.Upper)} {
		if exists(t, d) {
			t.Errorf("%s still exists after Remove", d)
		}
	}
	if !exists(t, filepath.Join(p.Lower, goldenFile)) {
		t.Error("Remove touched the golden root")
	}
}

// TestForeignMount: whatever else is mounted at a node's mount point must be
// neither adopted, nor mounted over, nor unmounted, nor wiped under.
func TestForeignMount(t *testing.T) {
	testenv.RequireRoot(t)
	tests := []struct {
		name    string
		mount   func(t *testing.T, o Options, target string) error
		wantErr string
	}{
		{
			name: "tmpfs",
			mount: func(t *testing.T, o Options, target string) error {
				return unix.Mount("tmpfs", target, "tmpfs", 0, "size=1m")
			},
			wantErr: "tmpfs filesystem",
		},
		{
			name: "overlay of other layers",
			mount: func(t *testing.T, o Options, target string) error {
				other := filepath.Join(o.OverlayDir, "other")
				for _, d := range []string{"upper", "work"} {
					if err := os.MkdirAll(filepath.Join(other, d), 0o755); err != nil {
						t.Fatal(err)
					}
				}
				opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work,index=on,nfs_export=on", o.RootDir, other, other)
				return unix.Mount("overlay", target, "overlay", 0, opts)
			},
			wantErr: "has upperdir=",
		},
		{
			name: "overlay without nfs_export",
			mount: func(t *testing.T, o Options, target string) error {
				ov := filepath.Join(o.OverlayDir, nodeA.String())
				opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work,index=off,nfs_export=off", o.RootDir, ov, ov)
				return unix.Mount("overlay", target, "overlay", 0, opts)
			},
			wantErr: "has index=",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testLayout(t)
			m, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.makeDirs(nodeA); err != nil {
				t.Fatal(err)
			}
			p := mustPaths(t, m, nodeA)
			t.Cleanup(func() { detachAll(t, p.Mount) })
			if err := tt.mount(t, o, p.Mount); err != nil {
				t.Fatalf("mount the foreign filesystem: %v", err)
			}

			adopted, err := m.Mount(nodeA)
			if adopted {
				t.Error("Mount adopted a foreign mount")
			}
			wantErr(t, err, tt.wantErr)
			_, err = m.Mounted(nodeA)
			wantErr(t, err, tt.wantErr)
			_, err = m.Wipe(nodeA)
			wantErr(t, err, "refusing while")
			wantErr(t, m.Remove(nodeA), "refusing while")
			if nodes, err := m.MountedNodes(); err != nil || len(nodes) != 0 {
				t.Errorf("MountedNodes = %v, %v; want none", nodes, err)
			}
			if n := mountsAt(t, p.Mount); n != 1 {
				t.Errorf("%d mounts at %s, want just the foreign one", n, p.Mount)
			}
		})
	}

	t.Run("Unmount leaves tmpfs alone", func(t *testing.T) {
		m := newTestManager(t)
		if err := m.makeDirs(nodeA); err != nil {
			t.Fatal(err)
		}
		p := mustPaths(t, m, nodeA)
		t.Cleanup(func() { detachAll(t, p.Mount) })
		if err := unix.Mount("tmpfs", p.Mount, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		wantErr(t, m.Unmount(nodeA), "not an overlay")
		if n := mountsAt(t, p.Mount); n != 1 {
			t.Errorf("tmpfs was unmounted (%d mounts left)", n)
		}
	})
}

func TestUnmountBusy(t *testing.T) {
	testenv.RequireRoot(t)
	m := newTestManager(t)
	p := mustPaths(t, m, nodeA)
	mountNode(t, m, nodeA)
	f, err := os.Open(filepath.Join(p.Mount, goldenFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })

	err = m.Unmount(nodeA)
	if !errors.Is(err, unix.EBUSY) {
		t.Fatalf("Unmount of a busy overlay = %v, want EBUSY", err)
	}
	if mounted, err := m.Mounted(nodeA); !mounted || err != nil {
		t.Errorf("after EBUSY, Mounted = %v, %v; want true, nil", mounted, err)
	}
	if err := m.UnmountDetach(nodeA); err != nil {
		t.Fatalf("UnmountDetach: %v", err)
	}
	if mounted, err := m.Mounted(nodeA); mounted || err != nil {
		t.Errorf("after UnmountDetach, Mounted = %v, %v; want false, nil", mounted, err)
	}
	// The detached overlay still serves the open file.
	if _, err := f.Read(make([]byte, 1)); err != nil {
		t.Errorf("read from the detached overlay: %v", err)
	}
}

func TestMountedNodes(t *testing.T) {
	testenv.RequireRoot(t)
	m := newTestManager(t)
	want := map[node.ID]bool{}
	for _, name := range []string{"0A000001", "0A000002", "0A000003"} {
		id := node.MustParse(name)
		mountNode(t, m, id)
		want[id] = true
	}
	// Mounted once and unmounted: not listed.
	mountNode(t, m, node.MustParse("0A000004"))
	if err := m.Unmount(node.MustParse("0A000004")); err != nil {
		t.Fatal(err)
	}
	// A tmpfs on a node's mount point, and one on a dir that is no node.
	for _, name := range []string{"0A000005", "not-a-node"} {
		dir := filepath.Join(m.nodeDir, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { detachAll(t, dir) })
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
	}
	got, err := m.MountedNodes()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("MountedNodes = %v, want %v", got, want)
	}
}

func TestCheck(t *testing.T) {
	testenv.RequireRoot(t)
	m := newTestManager(t)
	if err := m.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if entries, _ := os.ReadDir(m.overlayDir); len(entries) != 0 {
		t.Errorf("Check left %v in the overlay dir", entries)
	}
	if entries, _ := os.ReadDir(m.rootDir); len(entries) != 1 {
		t.Errorf("Check changed the golden root: %v", entries)
	}
}

// BenchmarkMountUnmount mounts b.N overlays sharing one golden root, then
// unmounts them all: the cost per node of start-up and shutdown.
func BenchmarkMountUnmount(b *testing.B) {
	testenv.RequireRoot(b)
	m := newTestManager(b)
	nodes := make([]node.ID, b.N)
	for i := range nodes {
		nodes[i] = node.FromUint32(0x0A000000 + uint32(i))
		p := mustPaths(b, m, nodes[i])
		b.Cleanup(func() { detachAll(b, p.Mount) })
	}
	b.ResetTimer()
	for _, id := range nodes {
		if _, err := m.Mount(id); err != nil {
			b.Fatal(err)
		}
	}
	for _, id := range nodes {
		if err := m.Unmount(id); err != nil {
			b.Fatal(err)
		}
	}
}
