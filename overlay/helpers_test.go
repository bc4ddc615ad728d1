package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// testDirPrefix names every directory the tests mount under, so TestMain can
// find mounts left behind.
const testDirPrefix = "pxebootfs-overlay-test-"

func TestMain(m *testing.M) {
	code := m.Run()
	if left := leftoverMounts(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: tests left mounts behind: %s\n", strings.Join(left, ", "))
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// leftoverMounts lists mount points made by these tests that are still there.
func leftoverMounts() []string {
	infos, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return !strings.Contains(i.Mountpoint, "/"+testDirPrefix), false
	})
	if err != nil {
		return []string{"cannot read mount table: " + err.Error()}
	}
	var mps []string
	for _, i := range infos {
		mps = append(mps, i.Mountpoint+" ("+i.FSType+")")
	}
	return mps
}

// diskTempDir returns a new directory on a disk filesystem: overlayfs
// behaves differently with its upper dir on tmpfs, so /tmp is used only if
// it is not tmpfs. The directory is removed at the end of the test, after
// any mount left under it was reported and detached.
func diskTempDir(t testing.TB) string {
	t.Helper()
	base := os.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(base, &st); err != nil {
		t.Fatalf("statfs %s: %v", base, err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		base = "/var/tmp"
	}
	dir, err := os.MkdirTemp(base, testDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	dir, err = filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		t.Fatalf("%s is on tmpfs; overlay tests need a disk filesystem", dir)
	}
	t.Cleanup(func() {
		infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		if err != nil {
			t.Errorf("read mount table: %v", err)
			return
		}
		if len(infos) > 0 {
			t.Errorf("%d mounts left under %s", len(infos), dir)
			for _, i := range infos {
				detachAll(t, i.Mountpoint)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove test dir: %v", err)
		}
	})
	return dir
}

// detachAll lazily unmounts everything stacked at target, so a cleanup never
// hangs on a busy mount.
func detachAll(t testing.TB, target string) {
	t.Helper()
	for range 16 {
		err := unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return // not (or no longer) a mount point
		}
		if err != nil {
			t.Errorf("detach %s: %v", target, err)
			return
		}
	}
	t.Errorf("detach %s: still mounted after 16 unmounts", target)
}

// goldenFile is in every test golden root.
const (
	goldenFile    = "etc/motd"
	goldenContent = "golden\n"
)

// testLayout makes a golden root, a node dir and an overlay dir on disk and
// returns Options for them.
func testLayout(t testing.TB) Options {
	t.Helper()
	base := diskTempDir(t)
	o := Options{
		RootDir:    filepath.Join(base, "root"),
		NodeDir:    filepath.Join(base, "nodes"),
		OverlayDir: filepath.Join(base, "overlays"),
	}
	for _, d := range []string{filepath.Join(o.RootDir, "etc"), o.NodeDir, o.OverlayDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WriteFile(t, filepath.Join(o.RootDir, goldenFile), goldenContent)
	return o
}

func newTestManager(t testing.TB) *Manager {
	t.Helper()
	m, err := New(testLayout(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// mountNode mounts node's overlay, registering a lazy unmount first.
func mountNode(t testing.TB, m *Manager, node node.ID) (adopted bool) {
	t.Helper()
	p := mustPaths(t, m, node)
	t.Cleanup(func() { detachAll(t, p.Mount) })
	adopted, err := m.Mount(node)
	if err != nil {
		t.Fatalf("Mount(%s): %v", node, err)
	}
	return adopted
}

func mustPaths(t testing.TB, m *Manager, node node.ID) Paths {
	t.Helper()
	p, err := m.Paths(node)
	if err != nil {
		t.Fatalf("Paths(%s): %v", node, err)
	}
	return p
}

// mountsAt counts the mount-table entries at target, stacked ones included.
func mountsAt(t testing.TB, target string) int {
	t.Helper()
	infos, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return i.Mountpoint != target, false
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(infos)
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(t testing.TB, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// wantErr fails unless err is non-nil and its message contains want.
func wantErr(t testing.TB, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
