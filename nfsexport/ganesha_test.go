package nfsexport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// Tests in this file that need a server run a real ganesha.nfsd (see
// testenv.StartGanesha) and real NFS clients (libnfs-utils).

// newGaneshaServer starts Ganesha and returns a backend on it.
func newGaneshaServer(t *testing.T) (*testenv.GaneshaServer, *Ganesha) {
	t.Helper()
	srv := testenv.StartGanesha(t)
	g, err := NewGanesha(GaneshaOptions{ConfigFile: srv.Include, Bus: srv.Bus})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return srv, g
}

// ganeshaDir makes a directory with a file in it, to export, and unexports
// it from client at the end of the test.
func ganeshaDir(t *testing.T, g *Ganesha, client netip.Addr, fsid uint32) Export {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("hello from "+client.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := Export{Path: dir, Client: client, FSID: fsid}
	t.Cleanup(func() {
		if err := g.Unexport(context.Background(), e); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return e
}

// TestGaneshaAccess proves with real NFS clients that an export is visible
// to its client alone, read-write, root not squashed.
func TestGaneshaAccess(t *testing.T) {
	ctx := context.Background()
	srv, g := newGaneshaServer(t)
	loop := netip.MustParseAddr("127.0.0.1")
	a := ganeshaDir(t, g, loop, 31)
	b := ganeshaDir(t, g, testenv.GaneshaClientAddr, 32)
	for _, e := range []Export{a, b} {
		if err := g.Export(ctx, e); err != nil {
			t.Fatal(err)
		}
	}

	type client struct {
		name   string
		ns     *testenv.NetNS
		server netip.Addr
	}
	onServer := client{"127.0.0.1 (server namespace)", srv.NS, loop}
	remote := client{testenv.GaneshaClientAddr.String() + " (client namespace)", srv.Client, testenv.GaneshaServerAddr}
	for _, tt := range []struct {
		c    client
		e    Export
		want bool
	}{
		{onServer, a, true},
		{onServer, b, false},
		{remote, a, false},
		{remote, b, true},
	} {
		t.Run(fmt.Sprintf("%s reads %s", tt.c.name, tt.e.Client), func(t *testing.T) {
			data, err := tt.c.ns.NFSRead(t, tt.c.server, tt.e.Path+"/hello")
			switch {
			case tt.want && err != nil:
				t.Fatal(err)
			case tt.want && string(data) != "hello from "+tt.e.Client.String()+"\n":
				t.Errorf("read %q", data)
			case !tt.want && err == nil:
				t.Fatalf("%s read the export for %s: %q", tt.c.name, tt.e.Client, data)
			case !tt.want && !strings.Contains(err.Error(), "ACCES"):
				t.Errorf("refused, but not for access: %v", err)
			}
		})
	}

	// Written as root through NFS, owned by root on the server.
	if err := srv.NS.NFSCreate(t, loop, a.Path+"/new", []byte("written\n")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(a.Path, "new"))
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(a.Path, "new")); string(data) != "written\n" {
		t.Errorf("server has %q", data)
	}
	if uid := fileUID(fi); uid != 0 {
		t.Errorf("file written by root is owned by uid %d: root was squashed", uid)
	}

	if err := g.Unexport(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.NS.NFSRead(t, loop, a.Path+"/hello"); err == nil {
		t.Error("still readable after Unexport")
	}
}

// TestGaneshaRestart: Ganesha exports what the managed file holds when it
// starts, so exports survive its restart.
func TestGaneshaRestart(t *testing.T) {
	ctx := context.Background()
	srv, g := newGaneshaServer(t)
	loop := netip.MustParseAddr("127.0.0.1")
	e := ganeshaDir(t, g, loop, 41)
	if err := g.Export(ctx, e); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	if ok, err := g.Exported(ctx, e); err != nil || !ok {
		t.Fatalf("after a restart Exported = %v, %v", ok, err)
	}
	if _, err := srv.NS.NFSRead(t, loop, e.Path+"/hello"); err != nil {
		t.Fatal(err)
	}
	if used, err := g.UsedFSIDs(ctx); err != nil || used[41] != e.Path {
		t.Errorf("UsedFSIDs = %v, %v", used, err)
	}
}

// TestGaneshaRepair: what restore relies on. An export missing from the
// running Ganesha, or from the managed file, is not Exported, and Export
// puts it back.
func TestGaneshaRepair(t *testing.T) {
	ctx := context.Background()
	srv, g := newGaneshaServer(t)
	loop := netip.MustParseAddr("127.0.0.1")
	e := ganeshaDir(t, g, loop, 51)
	if err := g.Export(ctx, e); err != nil {
		t.Fatal(err)
	}

	t.Run("removed from Ganesha", func(t *testing.T) {
		if removed, err := g.removeExport(ctx, 51); err != nil || !removed {
			t.Fatalf("RemoveExport = %v, %v", removed, err)
		}
		mustGaneshaExported(t, g, e, false)
		if err := g.Export(ctx, e); err != nil {
			t.Fatal(err)
		}
		mustGaneshaExported(t, g, e, true)
	})
	t.Run("removed from the file", func(t *testing.T) {
		if err := g.editFile(func([]ganeshaBlock) ([]ganeshaBlock, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
		mustGaneshaExported(t, g, e, false)
		if err := g.Export(ctx, e); err != nil {
			t.Fatal(err)
		}
		mustGaneshaExported(t, g, e, true)
	})
	t.Run("another client", func(t *testing.T) {
		// The node's IP changed: the export is updated in place.
		e2 := e
		e2.Client = netip.MustParseAddr("127.0.0.9")
		t.Cleanup(func() { g.Unexport(ctx, e2) })
		if err := g.Export(ctx, e2); err != nil {
			t.Fatal(err)
		}
		mustGaneshaExported(t, g, e2, true)
		mustGaneshaExported(t, g, e, false)
		if _, err := srv.NS.NFSRead(t, loop, e.Path+"/hello"); err == nil {
			t.Error("the old client can still read")
		}
		if err := g.Export(ctx, e); err != nil {
			t.Fatal(err)
		}
		mustGaneshaExported(t, g, e, true)
	})
	t.Run("stale export of an old fsid", func(t *testing.T) {
		// Ganesha exports the path under an old id the file has
		// forgotten (say, the registry was rebuilt): Export replaces it.
		old := e
		old.FSID = 52
		if err := g.Unexport(ctx, e); err != nil {
			t.Fatal(err)
		}
		if err := g.Export(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := g.editFile(func([]ganeshaBlock) ([]ganeshaBlock, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
		if err := g.Export(ctx, e); err != nil {
			t.Fatal(err)
		}
		mustGaneshaExported(t, g, e, true)
		if _, found, err := g.display(ctx, 52); err != nil || found {
			t.Errorf("old Export_Id 52 still active (%v)", err)
		}
	})
}

// TestGaneshaInitFindsStale: an export Ganesha made while nothing was
// mounted at its path keeps serving the directory under a later mount; a
// daemon starting (Init) before it mounts the path re-adds such an export
// when it exports it, and leaves exports of mounted paths alone.
func TestGaneshaInitFindsStale(t *testing.T) {
	ctx := context.Background()
	srv, g := newGaneshaServer(t)
	loop := netip.MustParseAddr("127.0.0.1")
	under := ganeshaDir(t, g, loop, 71) // not mounted when exported
	mounted := ganeshaDir(t, g, loop, 72)
	for i, e := range []Export{under, mounted} {
		layer := filepath.Join(t.TempDir(), "layer")
		if err := os.Mkdir(layer, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(layer, "hello"), []byte("from the mount\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := g.Export(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if err := syscall.Mount(layer, e.Path, "", syscall.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		// Registered after ganeshaDir's unexport, so it runs before it:
		// lazily, as Ganesha may still hold the mount.
		t.Cleanup(func() { syscall.Unmount(e.Path, syscall.MNT_DETACH) })
		if i == 1 {
			if err := g.Export(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	if data, _ := srv.NS.NFSRead(t, loop, under.Path+"/hello"); string(data) == "from the mount\n" {
		t.Fatal("Ganesha serves the mount made after the export; the test proves nothing")
	}
	// The daemon restarts: a new backend, Init before the path is mounted.
	if err := syscall.Unmount(under.Path, 0); err != nil {
		t.Fatal(err)
	}
	g2, err := NewGanesha(GaneshaOptions{ConfigFile: srv.Include, Bus: srv.Bus})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g2.Close() })
	if err := g2.Init(ctx); err != nil {
		t.Fatal(err)
	}
	mustGaneshaExported(t, g2, under, false)
	mustGaneshaExported(t, g2, mounted, true)
	layer := filepath.Join(t.TempDir(), "again")
	if err := os.Mkdir(layer, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layer, "hello"), []byte("from the mount\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(layer, under.Path, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := g2.Export(ctx, under); err != nil {
		t.Fatal(err)
	}
	mustGaneshaExported(t, g2, under, true)
	if data, err := srv.NS.NFSRead(t, loop, under.Path+"/hello"); err != nil || string(data) != "from the mount\n" {
		t.Errorf("after Export Ganesha serves %q, %v; want the mount", data, err)
	}
}

func mustGaneshaExported(t *testing.T, g *Ganesha, e Export, want bool) {
	t.Helper()
	got, err := g.Exported(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Exported(%v) = %v, want %v", e, got, want)
	}
}

// TestGaneshaIDConflict: an Export_Id another path holds, in the managed file
// or in Ganesha, is refused, and nothing is changed.
func TestGaneshaIDConflict(t *testing.T) {
	ctx := context.Background()
	srv, g := newGaneshaServer(t)
	loop := netip.MustParseAddr("127.0.0.1")
	mine := ganeshaDir(t, g, loop, 61)
	if err := g.Export(ctx, mine); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(srv.Include)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("in the file", func(t *testing.T) {
		other := ganeshaDir(t, g, netip.MustParseAddr("127.0.0.2"), 61)
		err := g.Export(ctx, other)
		if err == nil || !strings.Contains(err.Error(), "already used by "+mine.Path) {
			t.Fatalf("Export = %v, want the conflict with %s", err, mine.Path)
		}
		if after, _ := os.ReadFile(srv.Include); string(after) != string(before) {
			t.Errorf("the file changed:\n%s", after)
		}
		mustGaneshaExported(t, g, mine, true)
	})
	t.Run("in Ganesha", func(t *testing.T) {
		// An export the admin made from a file of their own.
		foreign, err := NewGanesha(GaneshaOptions{ConfigFile: filepath.Join(t.TempDir(), "admin.conf"), Bus: srv.Bus})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { foreign.Close() })
		theirs := ganeshaDir(t, foreign, netip.MustParseAddr("127.0.0.3"), 62)
		if err := foreign.Export(ctx, theirs); err != nil {
			t.Fatal(err)
		}
		clash := ganeshaDir(t, g, loop, 62)
		err = g.Export(ctx, clash)
		if !errors.Is(err, errIDConflict) || !strings.Contains(err.Error(), theirs.Path) {
			t.Fatalf("Export = %v, want the conflict with %s", err, theirs.Path)
		}
		if after, _ := os.ReadFile(srv.Include); string(after) != string(before) {
			t.Errorf("the file changed:\n%s", after)
		}
		mustGaneshaExported(t, foreign, theirs, true)
		used, err := g.UsedFSIDs(ctx)
		if err != nil || used[62] != theirs.Path || used[61] != mine.Path || used[0] != "/" {
			t.Errorf("UsedFSIDs = %v, %v", used, err)
		}
	})
}

// TestGaneshaUnreachable: without Ganesha every call fails with an error
// naming the D-Bus call and the bus, and Export leaves nothing in the file.
func TestGaneshaUnreachable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "pxebootfs.conf")
	bus := "unix:path=" + filepath.Join(dir, "no-bus")
	g, err := NewGanesha(GaneshaOptions{ConfigFile: file, Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	e := Export{Path: root, Client: netip.MustParseAddr("127.0.0.2"), FSID: 7}

	err = g.Export(ctx, e)
	var be *BusError
	// A new node's Export_Id is added without asking first (see apply).
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "org.ganesha.nfsd.exportmgr.AddExport(") || !strings.Contains(err.Error(), ") on "+bus) {
		t.Fatalf("Export = %v, want a *BusError naming the call and the bus", err)
	}
	if b, err := g.fileBlocks(); err != nil || len(b) != 0 {
		t.Errorf("failed Export left blocks %v (%v)", b, err)
	}
	for name, call := range map[string]func() error{
		"unexport":   func() error { return g.Unexport(ctx, e) },
		"exported":   func() error { _, err := g.Exported(ctx, e); return err },
		"list":       func() error { _, err := g.List(ctx); return err },
		"used fsids": func() error { _, err := g.UsedFSIDs(ctx); return err },
		"check":      func() error { return g.Check(ctx) },
	} {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.As(err, &be) || !strings.Contains(err.Error(), bus) {
				t.Errorf("error %v is not a *BusError naming %s", err, bus)
			}
		})
	}

	// Validation comes first: an fsid Ganesha cannot hold never reaches
	// the bus.
	for _, fsid := range []uint32{0, MaxGaneshaFSID + 1} {
		big := e
		big.FSID = fsid
		if err := g.Export(ctx, big); !errors.Is(err, ErrInvalidExport) {
			t.Errorf("Export(fsid %d) = %v, want ErrInvalidExport", fsid, err)
		}
		if ok, err := g.Exported(ctx, big); ok || err != nil {
			t.Errorf("Exported(fsid %d) = %v, %v; want false, nil", fsid, ok, err)
		}
	}
}

// TestGaneshaInitRemovesOneBlockFiles: the file an AddExport or
// UpdateExport was given (its block alone) is removed after the call; one a
// crash left behind is removed by the next Init, and nothing else is.
func TestGaneshaInitRemovesOneBlockFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pxebootfs.conf")
	g, err := NewGanesha(GaneshaOptions{ConfigFile: file, Bus: "unix:path=" + filepath.Join(dir, "no-bus")})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	stray := filepath.Join(dir, ".pxebootfs.conf.one-123")
	other := filepath.Join(dir, "admin.conf")
	for _, p := range []string{stray, other} {
		if err := os.WriteFile(p, []byte("EXPORT {}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Init left %s (%v)", stray, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("Init removed a file not its own: %v", err)
	}
}

func TestBusErrorMessage(t *testing.T) {
	e := &BusError{Bus: "system bus", Method: "org.ganesha.nfsd.exportmgr.AddExport", Args: []any{"/etc/g.conf", "EXPORT(Export_Id=5)"}, Err: errors.New("boom")}
	want := `D-Bus org.ganesha.nfsd.exportmgr.AddExport("/etc/g.conf", "EXPORT(Export_Id=5)") on system bus: boom`
	if e.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", e.Error(), want)
	}
}

// TestGaneshaConcurrent exports 100 roots at once, as a boot storm would,
// while a reader checks that the managed file is never seen half-written.
func TestGaneshaConcurrent(t *testing.T) {
	const n = 100
	ctx := context.Background()
	srv, g := newGaneshaServer(t)
	exports := make([]Export, n)
	for i := range exports {
		exports[i] = ganeshaDir(t, g, netip.AddrFrom4([4]byte{127, 1, 0, byte(i + 1)}), uint32(3000+i))
	}
	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() { readerDone <- readGaneshaWhole(srv.Include, stop) }()

	applyConcurrently(t, ctx, g.Export, exports)
	close(stop)
	if err := <-readerDone; err != nil {
		t.Error(err)
	}
	list, err := g.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(list, sortedByPath(exports)) {
		t.Errorf("List has %d exports, want our %d", len(list), n)
	}
	if b, err := g.fileBlocks(); err != nil || len(b) != n {
		t.Errorf("the file has %d blocks (%v), want %d", len(b), err, n)
	}
	applyConcurrently(t, ctx, g.Unexport, exports)
	if list, err := g.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("after Unexport List = %v, %v", list, err)
	}
	noTempFiles(t, filepath.Dir(srv.Include))
}

func sortedByPath(exports []Export) []Export {
	s := slices.Clone(exports)
	slices.SortFunc(s, func(a, b Export) int { return strings.Compare(a.Path, b.Path) })
	return s
}

// readGaneshaWhole reads file until stop closes and reports any read that is
// not a complete managed file.
func readGaneshaWhole(file string, stop <-chan struct{}) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		time.Sleep(time.Millisecond)
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if _, err := parseGaneshaFile(data); err != nil {
			return fmt.Errorf("read a partial managed file: %v\n%s", err, data)
		}
	}
}

func fileUID(fi os.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return ^uint32(0)
}
