package nfsexport

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeExportfs writes a stand-in for exportfs that appends its arguments to
// a log file next to it and then runs body, for the error paths a real
// exportfs will not take on demand.
func fakeExportfs(t testing.TB, body string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "exportfs")
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> " + filepath.Join(dir, "calls") + "\n" + body + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// fakeCalls returns the argument lists the fake was run with.
func fakeCalls(t testing.TB, bin string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(filepath.Dir(bin), "calls"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func newFake(t testing.TB, body string, o ExportfsOptions) (*Exportfs, string) {
	t.Helper()
	o.Binary = fakeExportfs(t, body)
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
	return x, o.Binary
}

const failBody = `echo "exportfs: simulated failure for $*" >&2; exit 1`

func TestExportRejectsBeforeRunningExportfs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.2")
	tests := []struct {
		name   string
		e      Export
		wantIs error
	}{
		{"bad path", Export{Path: dir + "/a b", Client: ip, FSID: 1}, ErrInvalidExport},
		{"zero client", Export{Path: dir, FSID: 1}, ErrInvalidExport},
		{"unspecified client", Export{Path: dir, Client: netip.IPv4Unspecified(), FSID: 1}, ErrInvalidExport},
		{"IPv6 client", Export{Path: dir, Client: netip.IPv6Loopback(), FSID: 1}, ErrInvalidExport},
		{"fsid 0", Export{Path: dir, Client: ip, FSID: 0}, ErrInvalidExport},
		{"missing path", Export{Path: filepath.Join(dir, "missing"), Client: ip, FSID: 1}, fs.ErrNotExist},
		{"file", Export{Path: file, Client: ip, FSID: 1}, syscall.ENOTDIR},
		{"symlink", Export{Path: link, Client: ip, FSID: 1}, syscall.ENOTDIR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, bin := newFake(t, "exit 0", ExportfsOptions{})
			err := x.Export(context.Background(), tt.e)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Export(%v) = %v, want %v", tt.e, err, tt.wantIs)
			}
			if calls := fakeCalls(t, bin); len(calls) != 0 {
				t.Errorf("exportfs was run: %q", calls)
			}
		})
	}
}

func TestExportfsFailures(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	e := Export{Path: root, Client: netip.MustParseAddr("127.0.0.2"), FSID: 7}
	target := "127.0.0.2:" + root

	t.Run("export", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "pxebootfs.exports")
		x, bin := newFake(t, failBody, ExportfsOptions{ExportsFile: file})
		err := x.Export(ctx, e)
		wantCmd := bin + " -o rw,no_root_squash,no_subtree_check,sync,fsid=7 " + target
		if err == nil || !strings.Contains(err.Error(), wantCmd) || !strings.Contains(err.Error(), "simulated failure for -o") {
			t.Fatalf("Export error %q lacks the command line %q or its stderr", err, wantCmd)
		}
		var ee *ExecError
		if !errors.As(err, &ee) || ee.Cmd[0] != bin || ee.Stderr == "" || ee.exitCode() != 1 {
			t.Fatalf("error is not a complete *ExecError: %#v", ee)
		}
		// exportfs may have written etab before failing: Export removes it.
		want := []string{"-o rw,no_root_squash,no_subtree_check,sync,fsid=7 " + target, "-u " + target}
		if calls := fakeCalls(t, bin); strings.Join(calls, "|") != strings.Join(want, "|") {
			t.Errorf("calls = %q, want %q", calls, want)
		}
		if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("failed export was recorded in the exports file: %v", err)
		}
	})

	t.Run("export with a cancelled context still cleans up", func(t *testing.T) {
		x, bin := newFake(t, "exit 0", ExportfsOptions{})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := x.Export(cctx, e); !errors.Is(err, context.Canceled) {
			t.Fatalf("Export = %v, want context.Canceled", err)
		}
		if calls := fakeCalls(t, bin); len(calls) != 1 || calls[0] != "-u "+target {
			t.Errorf("calls = %q, want only the cleanup -u", calls)
		}
	})

	t.Run("unexport", func(t *testing.T) {
		x, bin := newFake(t, failBody, ExportfsOptions{})
		err := x.Unexport(ctx, e)
		if err == nil || !strings.Contains(err.Error(), bin+" -u "+target) || !strings.Contains(err.Error(), "simulated failure") {
			t.Fatalf("Unexport error %q lacks command line or stderr", err)
		}
	})

	for _, tt := range []struct {
		name string
		call func(x *Exportfs) error
	}{
		{"exported", func(x *Exportfs) error { _, err := x.Exported(ctx, e); return err }},
		{"list", func(x *Exportfs) error { _, err := x.List(ctx); return err }},
		{"used fsids", func(x *Exportfs) error { _, err := x.UsedFSIDs(ctx); return err }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x, bin := newFake(t, failBody, ExportfsOptions{})
			err := tt.call(x)
			if err == nil || !strings.Contains(err.Error(), bin+" -v") || !strings.Contains(err.Error(), "simulated failure for -v") {
				t.Fatalf("error %q lacks command line or stderr", err)
			}
		})
		t.Run(tt.name+" unparsable output", func(t *testing.T) {
			x, _ := newFake(t, `printf '\t\t127.0.0.2(rw)\n'`, ExportfsOptions{})
			if err := tt.call(x); err == nil || !strings.Contains(err.Error(), "without a path") {
				t.Fatalf("error = %v, want a parse error", err)
			}
		})
	}
}

func TestUnexportAbsent(t *testing.T) {
	e := Export{Path: "/srv/nodes/gone", Client: netip.MustParseAddr("127.0.0.2"), FSID: 7}
	notFound := `echo "exportfs: Could not find '$2' to unexport." >&2; exit `
	tests := []struct {
		name    string
		body    string
		wantErr bool
	}{
		{"could not find, exit 1", notFound + "1", false},
		{"could not find, other exit code", notFound + "2", true},
		{"other failure, exit 1", failBody, true},
		{"success", "exit 0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, _ := newFake(t, tt.body, ExportfsOptions{})
			if err := x.Unexport(context.Background(), e); (err != nil) != tt.wantErr {
				t.Fatalf("Unexport = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// TestExportsFileUpdates checks the exports file's content through a fake
// exportfs that always succeeds; the real-exportfs tests check it too.
func TestExportsFileUpdates(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "exports.d") // created by Export
	file := filepath.Join(dir, "pxebootfs.exports")
	x, _ := newFake(t, "exit 0", ExportfsOptions{ExportsFile: file, Options: "rw,sync"})

	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ea := Export{Path: a, Client: netip.MustParseAddr("127.0.0.3"), FSID: 31}
	eb := Export{Path: b, Client: netip.MustParseAddr("127.0.0.4"), FSID: 32}

	if err := x.Unexport(ctx, ea); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Unexport created the exports file: %v", err)
	}

	for _, e := range []Export{eb, ea} {
		if err := x.Export(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	wantLines(t, file, a+" 127.0.0.3(rw,sync,fsid=31)", b+" 127.0.0.4(rw,sync,fsid=32)")
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}

	// An unchanged file is not rewritten.
	if err := x.Export(ctx, ea); err != nil {
		t.Fatal(err)
	}
	if fi2, err := os.Stat(file); err != nil || !os.SameFile(fi, fi2) {
		t.Errorf("repeated export rewrote the file (%v)", err)
	}

	// Re-exporting with another fsid replaces the line.
	ea.FSID = 33
	if err := x.Export(ctx, ea); err != nil {
		t.Fatal(err)
	}
	wantLines(t, file, a+" 127.0.0.3(rw,sync,fsid=33)", b+" 127.0.0.4(rw,sync,fsid=32)")

	if err := x.Unexport(ctx, ea); err != nil {
		t.Fatal(err)
	}
	wantLines(t, file, b+" 127.0.0.4(rw,sync,fsid=32)")
	if err := x.Unexport(ctx, eb); err != nil {
		t.Fatal(err)
	}
	wantLines(t, file)
	noTempFiles(t, dir)
}

// wantLines checks the export lines of an exports file we wrote.
func wantLines(t testing.TB, file string, want ...string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), exportsFileHeader) {
		t.Errorf("%s lacks its header:\n%s", file, data)
	}
	got := exportLines(string(data))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot  %q\nwant %q", file, got, want)
	}
}

func exportLines(data string) []string {
	var lines []string
	for _, l := range strings.Split(data, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

func noTempFiles(t testing.TB, dir string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if strings.Contains(de.Name(), ".tmp-") || strings.Contains(de.Name(), ".one-") {
			t.Errorf("temporary file left behind: %s", de.Name())
		}
	}
}

// TestBatchedExportFailures: in batched mode one `exportfs -a` exports a
// whole batch; a failure is charged to the exports whose paths exportfs
// names, whose lines are then taken back and which are unexported, while
// the rest of the batch stands. A failure that names none of ours (a bad
// line of the admin's) fails nobody.
func TestBatchedExportFailures(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	good, bad := filepath.Join(root, "good"), filepath.Join(root, "bad")
	for _, d := range []string{good, bad, bad + "2"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	eGood := Export{Path: good, Client: netip.MustParseAddr("127.0.0.2"), FSID: 7}
	eBad := Export{Path: bad, Client: netip.MustParseAddr("127.0.0.3"), FSID: 8}
	// -v lists whatever the file holds, as etab would after -a.
	list := `[ "$1" = -v ] && { sed -n 's/^\(\/[^ ]*\) \([^(]*\)(\(.*\))$/\1 \2(\3)/p' "$FILE"; exit 0; }; `
	tests := []struct {
		name     string
		aBody    string
		wantBad  bool // eBad's Export fails
		wantGood bool // eGood's Export fails
	}{
		{"all exported", "exit 0", false, false},
		{"one path named", `echo "exportfs: Failed to stat ` + bad + `: No such file or directory" >&2; exit 1`, true, false},
		{"a longer path named", `echo "exportfs: Failed to stat ` + bad + `2: No such file" >&2; exit 1`, false, false},
		{"not run", `exit 1`, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "pxebootfs.exports")
			body := "FILE=" + file + "\n" + list + tt.aBody
			x, bin := newFake(t, body, ExportfsOptions{ExportsFile: file, EtcExportsD: dir})
			if !x.batched() {
				t.Fatal("not batched")
			}
			var errGood, errBad error
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			x.beforeFileWrite = func() { once.Do(func() { close(entered); <-release }) }
			var wg sync.WaitGroup
			// A first export holds the batcher so that the two under
			// test share the next batch.
			other := Export{Path: root, Client: netip.MustParseAddr("127.0.0.4"), FSID: 9}
			wg.Go(func() { x.Export(ctx, other) })
			<-entered
			wg.Go(func() { errGood = x.Export(ctx, eGood) })
			wg.Go(func() { errBad = x.Export(ctx, eBad) })
			for x.fileBatch.queuedLen() != 2 {
				time.Sleep(time.Millisecond)
			}
			close(release)
			wg.Wait()
			if (errGood != nil) != tt.wantGood || (errBad != nil) != tt.wantBad {
				t.Fatalf("good: %v, bad: %v; want failures %v, %v", errGood, errBad, tt.wantGood, tt.wantBad)
			}
			data, _ := os.ReadFile(file)
			if got := strings.Contains(string(data), bad+" "); got == tt.wantBad {
				t.Errorf("bad export's line in file = %v:\n%s", got, data)
			}
			if tt.wantBad {
				if !strings.Contains(errBad.Error(), bin+" -a") || !strings.Contains(errBad.Error(), "Failed to stat "+bad) {
					t.Errorf("error %q lacks the command or its stderr line", errBad)
				}
				if !slices.Contains(fakeCalls(t, bin), "-u 127.0.0.3:"+bad) {
					t.Errorf("failed export not removed: calls %q", fakeCalls(t, bin))
				}
			}
		})
	}
}
