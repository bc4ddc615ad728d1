package nfsexport

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// Tests in this file run the real exportfs. TestMain isolates its state, so
// they change only a private etab and private /etc/exports{,.d}.

// newReal returns an Exportfs on the real exportfs binary, skipping the test
// unless it runs as root in isolated NFS state. Unset EtcExports{,D} point at
// empty temporary paths.
func newReal(t testing.TB, o ExportfsOptions) *Exportfs {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireNFSIsolation(t)
	if _, err := findBinary(""); err != nil {
		testenv.Skip(t, "exportfs is not installed (nfs-kernel-server): "+err.Error())
	}
	if o.EtcExports == "" {
		o.EtcExports = filepath.Join(t.TempDir(), "exports")
	}
	if o.EtcExportsD == "" {
		o.EtcExportsD = filepath.Join(t.TempDir(), "exports.d")
	}
	x, err := NewExportfs(o)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// exportDir creates a directory to export, and unexports it from client at
// the end of the test.
func exportDir(t testing.TB, x *Exportfs, client string, fsid uint32) Export {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := Export{Path: dir, Client: netip.MustParseAddr(client), FSID: fsid}
	t.Cleanup(func() {
		if err := x.Unexport(context.Background(), e); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return e
}

// exportfsV runs the real `exportfs -v` and returns the entries for path.
func exportfsV(t testing.TB, x *Exportfs, path string) []entry {
	t.Helper()
	out, err := exec.Command(x.bin, "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("exportfs -v: %v: %s", err, out)
	}
	all, err := parseExportfsVerbose(string(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var mine []entry
	for _, en := range all {
		if en.Path == path {
			mine = append(mine, en)
		}
	}
	return mine
}

func mustExported(t testing.TB, x *Exportfs, e Export, want bool) {
	t.Helper()
	got, err := x.Exported(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Exported(%v) = %v, want %v", e, got, want)
	}
}

func TestExportfsLifecycle(t *testing.T) {
	ctx := context.Background()
	x := newReal(t, ExportfsOptions{})
	e := exportDir(t, x, "127.0.0.2", 4101)

	mustExported(t, x, e, false)
	if err := x.Export(ctx, e); err != nil {
		t.Fatal(err)
	}
	check := func(fsid uint32) {
		t.Helper()
		got := exportfsV(t, x, e.Path)
		if len(got) != 1 || got[0].Client != "127.0.0.2" {
			t.Fatalf("exportfs -v lists %s as %+v, want it for 127.0.0.2 only", e.Path, got)
		}
		for _, o := range append(strings.Split(DefaultOptions, ","), fmt.Sprintf("fsid=%d", fsid)) {
			if !slices.Contains(got[0].Options, o) {
				t.Errorf("option %s missing in %v", o, got[0].Options)
			}
		}
	}
	check(4101)
	mustExported(t, x, e, true)
	mustExported(t, x, Export{Path: e.Path, Client: e.Client, FSID: 4999}, false)
	mustExported(t, x, Export{Path: e.Path, Client: netip.MustParseAddr("127.0.0.3"), FSID: e.FSID}, false)

	// Idempotent.
	if err := x.Export(ctx, e); err != nil {
		t.Fatalf("second Export: %v", err)
	}
	check(4101)

	// A second export, another path and fsid.
	e2 := exportDir(t, x, "127.0.0.2", 4102)
	if err := x.Export(ctx, e2); err != nil {
		t.Fatal(err)
	}
	list, err := x.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(list, e) || !slices.Contains(list, e2) {
		t.Errorf("List = %v, want %v and %v in it", list, e, e2)
	}

	// Exporting with another fsid replaces the export (exportfs replaces
	// the whole option set).
	e3 := e
	e3.FSID = 4103
	if err := x.Export(ctx, e3); err != nil {
		t.Fatal(err)
	}
	check(4103)
	mustExported(t, x, e, false)
	mustExported(t, x, e3, true)

	if err := x.Unexport(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got := exportfsV(t, x, e.Path); len(got) != 0 {
		t.Errorf("after Unexport exportfs -v still lists %+v", got)
	}
	mustExported(t, x, e3, false)
	mustExported(t, x, e2, true)
	if err := x.Unexport(ctx, e); err != nil {
		t.Fatalf("second Unexport: %v", err)
	}
}

func TestExportfsUsedFSIDs(t *testing.T) {
	ctx := context.Background()
	etc := t.TempDir()
	exportsD := filepath.Join(etc, "exports.d")
	if err := os.Mkdir(exportsD, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		filepath.Join(etc, "exports"): "# /srv/comment 127.0.0.1(fsid=999)\n" +
			"/srv/a 127.0.0.5(rw,fsid=0x10,no_subtree_check) 127.0.0.6(ro,fsid=root)\n",
		filepath.Join(exportsD, "a.exports"): "/srv/b -rw,fsid=4242 127.0.0.7\n" +
			"\"/srv/c d\" 127.0.0.8(fsid=4343,rw)\n" +
			"/srv/u 127.0.0.9(fsid=6d4a1d3e-1b7c-4a52-9c1e-0123456789ab)\n",
		filepath.Join(exportsD, ".hidden.exports"): "/srv/h 127.0.0.1(fsid=777)\n",
		filepath.Join(exportsD, "other.conf"):      "/srv/i 127.0.0.1(fsid=778)\n",
	}
	for name, data := range files {
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	x := newReal(t, ExportfsOptions{EtcExports: filepath.Join(etc, "exports"), EtcExportsD: exportsD})
	e := exportDir(t, x, "127.0.0.2", 4501)
	if err := x.Export(ctx, e); err != nil {
		t.Fatal(err)
	}

	used, err := x.UsedFSIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]string{16: "/srv/a", 0: "/srv/a", 4242: "/srv/b", 4343: "/srv/c d", 4501: e.Path}
	for fsid, path := range want {
		if used[fsid] != path {
			t.Errorf("UsedFSIDs[%d] = %q, want %q (all: %v)", fsid, used[fsid], path, used)
		}
	}
	for _, fsid := range []uint32{999, 777, 778} {
		if p, ok := used[fsid]; ok {
			t.Errorf("UsedFSIDs has %d (%s), which no export uses", fsid, p)
		}
	}
}

// TestExportfsSurvivesReexport shows why ExportsFile exists: `exportfs -ra`,
// run by every nfs-server restart, drops command-line exports that are in
// no exports file. It uses the isolated /etc/exports.d itself.
func TestExportfsSurvivesReexport(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(DefaultEtcExportsD, "pxebootfs-test.exports")
	persistent := newReal(t, ExportfsOptions{ExportsFile: file, EtcExports: DefaultEtcExports, EtcExportsD: DefaultEtcExportsD})
	t.Cleanup(func() { os.Remove(file) })
	transient := newReal(t, ExportfsOptions{})

	kept := exportDir(t, persistent, "127.0.0.2", 4701)
	lost := exportDir(t, transient, "127.0.0.2", 4702)
	for _, c := range []struct {
		x *Exportfs
		e Export
	}{{persistent, kept}, {transient, lost}} {
		if err := c.x.Export(ctx, c.e); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(persistent.bin, "-ra").CombinedOutput(); err != nil {
		t.Fatalf("exportfs -ra: %v: %s", err, out)
	}
	mustExported(t, persistent, kept, true)
	mustExported(t, transient, lost, false)

	used, err := persistent.UsedFSIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if used[4701] != kept.Path {
		t.Errorf("UsedFSIDs = %v, want 4701 from %s", used, kept.Path)
	}
}

// TestExportfsConcurrent exports 200 roots at once, as a mass boot would,
// while a reader checks that the exports file is never seen half-written.
// TestExportfsConcurrent: 200 exports made at once are each exported once
// with their own fsid, recorded in the file, and removed again; readers of
// the file never see a partial one. Batched (file in /etc/exports.d, which
// is private to this test binary), they take far fewer exportfs runs.
func TestExportfsConcurrent(t *testing.T) {
	for _, tt := range []struct {
		name    string
		batched bool
	}{
		{"one exportfs run per export", false},
		{"batched through exportfs -a", true},
	} {
		t.Run(tt.name, func(t *testing.T) { testExportfsConcurrent(t, tt.batched) })
	}
}

func testExportfsConcurrent(t *testing.T, batched bool) {
	const n = 200
	ctx := context.Background()
	dir := t.TempDir()
	o := ExportfsOptions{ExportsFile: filepath.Join(dir, "exports.d", "pxebootfs.exports")}
	if batched {
		o = ExportfsOptions{ExportsFile: "/etc/exports.d/pxebootfs-test.exports", EtcExports: DefaultEtcExports, EtcExportsD: DefaultEtcExportsD}
		t.Cleanup(func() { os.Remove(o.ExportsFile) })
	}
	file := o.ExportsFile
	x := newReal(t, o)
	if x.batched() != batched {
		t.Fatalf("batched() = %v, want %v", x.batched(), batched)
	}

	exports := make([]Export, n)
	for i := range exports {
		p := filepath.Join(dir, fmt.Sprintf("node%03d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		exports[i] = Export{Path: p, Client: netip.AddrFrom4([4]byte{127, 1, byte(i / 250), byte(i%250 + 1)}), FSID: uint32(10000 + i)}
	}
	t.Cleanup(func() {
		for _, e := range exports {
			if err := x.Unexport(context.Background(), e); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})

	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() { readerDone <- readWhole(file, stop) }()

	applyConcurrently(t, ctx, x.Export, exports)
	close(stop)
	if err := <-readerDone; err != nil {
		t.Error(err)
	}

	list, err := x.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[uint32]bool)
	var mine []Export
	for _, e := range list {
		if strings.HasPrefix(e.Path, dir+"/") {
			mine = append(mine, e)
			if seen[e.FSID] {
				t.Errorf("fsid %d listed twice", e.FSID)
			}
			seen[e.FSID] = true
		}
	}
	if len(mine) != n {
		t.Errorf("List has %d of our %d exports", len(mine), n)
	}
	if runs := x.exportRuns.Load(); batched && (runs == 0 || runs >= n) {
		t.Errorf("%d exportfs -a runs for %d concurrent exports, want 1 to %d", runs, n, n-1)
	} else {
		t.Logf("%d exportfs -a runs for %d exports", runs, n)
	}
	for _, e := range exports {
		if !slices.Contains(mine, e) {
			t.Errorf("List lacks %v", e)
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(exportLines(string(data))); got != n {
		t.Errorf("exports file has %d lines, want %d", got, n)
	}

	applyConcurrently(t, ctx, x.Unexport, exports)
	list, err = x.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if strings.HasPrefix(e.Path, dir+"/") {
			t.Errorf("still exported after Unexport: %v", e)
		}
	}
	wantLines(t, file)
	noTempFiles(t, filepath.Dir(file))
}

// readWhole reads file until stop closes and reports any read that is not a
// complete file: every version we write starts with the header and ends with
// a complete line.
func readWhole(file string, stop <-chan struct{}) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		// Leave the two CPUs to exportfs.
		time.Sleep(time.Millisecond)
		data, err := os.ReadFile(file)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		s := string(data)
		if !strings.HasPrefix(s, exportsFileHeader) || !strings.HasSuffix(s, "\n") {
			return fmt.Errorf("read a partial exports file:\n%s", s)
		}
		for _, l := range exportLines(s) {
			if !strings.HasSuffix(l, ")") {
				return fmt.Errorf("read a partial line %q", l)
			}
		}
	}
}

// BenchmarkExport measures one Export that exportfs has to apply (the
// re-export of an existing export with the same options), with the exports
// file kept up to date.
func BenchmarkExport(b *testing.B) {
	x := newReal(b, ExportfsOptions{ExportsFile: filepath.Join(b.TempDir(), "pxebootfs.exports")})
	e := exportDir(b, x, "127.0.0.2", 4801)
	ctx := context.Background()
	for b.Loop() {
		if err := x.Export(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// TestExportfsLeavesForeignPendingExports: a line of the admin's in
// /etc/exports.d that is not exported yet stays unexported while node
// roots are exported in batches (exportfs -a would apply it), and once
// the admin's line is gone batches use exportfs -a again.
func TestExportfsLeavesForeignPendingExports(t *testing.T) {
	ctx := context.Background()
	o := ExportfsOptions{ExportsFile: "/etc/exports.d/pxebootfs-test.exports", EtcExports: DefaultEtcExports, EtcExportsD: DefaultEtcExportsD}
	x := newReal(t, o)
	t.Cleanup(func() { os.Remove(o.ExportsFile) })
	foreignDir := t.TempDir()
	foreign := "/etc/exports.d/admin-test.exports"
	if err := os.WriteFile(foreign, []byte(foreignDir+" 127.9.9.9(ro,no_subtree_check,fsid=4242)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(foreign) })
	a := exportDir(t, x, "127.0.0.21", 20001)
	if err := x.Export(ctx, a); err != nil {
		t.Fatal(err)
	}
	mustExported(t, x, a, true)
	if got := exportfsV(t, x, foreignDir); len(got) != 0 {
		t.Errorf("the admin's pending export was applied by a node's export: %v", got)
	}
	if err := os.Remove(foreign); err != nil {
		t.Fatal(err)
	}
	runs := x.exportRuns.Load()
	b := exportDir(t, x, "127.0.0.22", 20002)
	if err := x.Export(ctx, b); err != nil {
		t.Fatal(err)
	}
	mustExported(t, x, b, true)
	if x.exportRuns.Load() != runs+1 || x.foreignWarned.Load() {
		t.Errorf("after the admin's line is gone the batch did not go through exportfs -a")
	}
	if got := exportfsV(t, x, foreignDir); len(got) != 0 {
		t.Errorf("the admin's removed line is exported: %v", got)
	}
}
