package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// fakeSource serves a fixed set of names; content can change under it.
type fakeSource struct {
	mu      sync.Mutex
	files   map[string][]byte
	nodes   []node.Node
	opens   atomic.Int64
	peeks   atomic.Int64
	openErr error
	stable  bool // Peek reports Stable: the kernel may cache
	subs    []func()
}

func (s *fakeSource) Resolve(ctx context.Context, name string) (catalog.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.files[name]; !ok {
		return catalog.Entry{}, fmt.Errorf("%q: %w", name, catalog.ErrNotServed)
	}
	return catalog.Entry{Name: name, Kind: catalog.KindStatic}, nil
}

func (s *fakeSource) Peek(e catalog.Entry) (catalog.Content, error) {
	s.peeks.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return catalog.Content{Data: bytes.Clone(s.files[e.Name]), Stable: s.stable, Final: true}, nil
}

func (s *fakeSource) OnChange(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = append(s.subs, f)
}

// change sets name's content and announces it, as a catalog reload does.
func (s *fakeSource) change(name, content string) {
	s.set(name, content)
	s.mu.Lock()
	subs := slices.Clone(s.subs)
	s.mu.Unlock()
	for _, f := range subs {
		f()
	}
}

func (s *fakeSource) Open(ctx context.Context, e catalog.Entry) (catalog.Opened, error) {
	s.opens.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.openErr != nil {
		return catalog.Opened{}, s.openErr
	}
	return catalog.Opened{Data: bytes.Clone(s.files[e.Name])}, nil
}

func (s *fakeSource) List() []catalog.DirEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.files {
		names = append(names, n)
	}
	sort.Strings(names)
	ents := make([]catalog.DirEntry, len(names))
	for i, n := range names {
		ents[i] = catalog.DirEntry{Name: n}
	}
	return ents
}

func (s *fakeSource) Nodes() []node.Node        { return s.nodes }
func (s *fakeSource) NodeDir(id node.ID) string { return "/netboot/node/" + id.String() }
func (s *fakeSource) FullMode() bool            { return s.nodes != nil }

func (s *fakeSource) set(name, content string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[name] = []byte(content)
}

// testMount mounts src in a temp dir and unmounts it when the test ends.
func testMount(t *testing.T, src Source) string {
	t.Helper()
	return testMountOpts(t, src, MountOptions{})
}

func testMountOpts(t *testing.T, src Source, o MountOptions) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	srv, err := Mount(dir, src, o)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		srv.Wait()
	})
	return dir
}

// requestLog collects go-fuse's request log: one "rx N: OPCODE …" line
// per request the kernel sends.
type requestLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *requestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := strings.Fields(string(p))
	for i, w := range f {
		if w == "rx" && i+2 < len(f) {
			l.ops = append(l.ops, f[i+2])
		}
	}
	return len(p), nil
}

// take returns the requests logged since the last take.
func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ops := l.ops
	l.ops = nil
	return ops
}

// TestWarmFetchIsOneOpen: a warm fetch of a stable name (what a tftpd
// does: open, fstat, read, close) costs the daemon one OPEN and its
// RELEASE and nothing else: the kernel answers the path walk (the root's
// mode, which default_permissions checks), the entry, the attributes and
// the read from its caches. The mount root once had attribute timeout 0,
// which made every fetch one more GETATTR round trip.
func TestWarmFetchIsOneOpen(t *testing.T) {
	src := &fakeSource{stable: true, files: map[string][]byte{"C0A80102": []byte("warm\n")}}
	reqs := &requestLog{}
	dir := testMountOpts(t, src, MountOptions{debugLog: log.New(reqs, "", 0)})
	p := filepath.Join(dir, "C0A80102")
	// Fetched by another process, as a tftpd does: a Go process gets
	// signals of its own runtime (preemption), and a signal while the
	// kernel waits for our answer makes it send an INTERRUPT. cat opens,
	// fstats, reads and closes, as a tftpd's transfer does.
	fetch := func() {
		t.Helper()
		if out, err := exec.Command("cat", p).CombinedOutput(); err != nil || string(out) != "warm\n" {
			t.Fatalf("cat %s: %q, %v", p, out, err)
		}
	}
	fetch()
	fetch() // the first FLUSH's ENOSYS turns FLUSH off
	// RELEASE is sent after close returns: collect until the kernel has
	// been quiet for a while.
	settle := func() []string {
		var ops []string
		for quiet := 0; quiet < 5; {
			time.Sleep(20 * time.Millisecond)
			if got := reqs.take(); len(got) > 0 {
				ops, quiet = append(ops, got...), 0
			} else {
				quiet++
			}
		}
		return ops
	}
	settle()
	for i := range 3 {
		fetch()
		if ops := settle(); !slices.Equal(ops, []string{"OPEN", "RELEASE"}) {
			t.Errorf("warm fetch %d sent %v, want [OPEN RELEASE]", i, ops)
		}
	}
}

func TestMountReadAndStat(t *testing.T) {
	src := &fakeSource{files: map[string][]byte{
		"C0A80102": []byte("LABEL linux\n  APPEND nfsroot=/n/C0A80102 ip=C0A80102\n"),
		"default":  []byte("DEFAULT local\n"),
		"empty":    {},
		"big":      bytes.Repeat([]byte("0123456789abcdef"), 70000),
	}}
	dir := testMount(t, src)
	for name, want := range src.files {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != int64(len(want)) {
				t.Errorf("stat size %d, want %d", fi.Size(), len(want))
			}
			if fi.Mode().Perm() != 0o444 {
				t.Errorf("mode %v, want world-readable 0444 (tftpd-hpa serves only those)", fi.Mode())
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("read %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

func TestMountENOENT(t *testing.T) {
	src := &fakeSource{files: map[string][]byte{"default": []byte("x")}}
	dir := testMount(t, src)
	for _, name := range []string{"C0A8010", "missing", "..x", strings.Repeat("A", 255)} {
		t.Run(name[:min(len(name), 12)], func(t *testing.T) {
			_, err := os.Stat(filepath.Join(dir, name))
			if !errors.Is(err, syscall.ENOENT) {
				t.Errorf("stat %q: %v, want ENOENT", name, err)
			}
		})
	}
}

func TestMountReadOnly(t *testing.T) {
	src := &fakeSource{files: map[string][]byte{"default": []byte("x")}}
	dir := testMount(t, src)
	p := filepath.Join(dir, "default")
	tests := []struct {
		name string
		op   func() error
	}{
		{"create", func() error { return os.WriteFile(filepath.Join(dir, "new"), []byte("x"), 0o644) }},
		{"write existing", func() error {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"truncate", func() error { return os.Truncate(p, 0) }},
		{"chmod", func() error { return os.Chmod(p, 0o777) }},
		{"remove", func() error { return os.Remove(p) }},
		{"rename", func() error { return os.Rename(p, filepath.Join(dir, "other")) }},
		{"mkdir", func() error { return os.Mkdir(filepath.Join(dir, "d"), 0o755) }},
		{"symlink", func() error { return os.Symlink("/etc/passwd", filepath.Join(dir, "l")) }},
		{"link", func() error { return os.Link(p, filepath.Join(dir, "h")) }},
		{"mknod", func() error { return syscall.Mknod(filepath.Join(dir, "fifo"), syscall.S_IFIFO|0o644, 0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s: %v, want EROFS", tt.name, err)
			}
		})
	}
	if got, _ := os.ReadFile(p); string(got) != "x" {
		t.Errorf("content changed to %q", got)
	}
}

func TestMountOpenFailureIsEIO(t *testing.T) {
	src := &fakeSource{files: map[string][]byte{"C0A80102": []byte("x")}}
	src.openErr = fmt.Errorf("provision C0A80102: mount overlay: %w", syscall.EPERM)
	dir := testMount(t, src)
	_, err := os.ReadFile(filepath.Join(dir, "C0A80102"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("open: %v, want EIO", err)
	}
	// The next open tries again.
	src.mu.Lock()
	src.openErr = nil
	src.mu.Unlock()
	if got, err := os.ReadFile(filepath.Join(dir, "C0A80102")); err != nil || string(got) != "x" {
		t.Fatalf("retry: %q, %v", got, err)
	}
}

func TestMountListing(t *testing.T) {
	src := &fakeSource{
		files: map[string][]byte{"default": []byte("x"), "C0A80102": []byte("y")},
		nodes: []node.Node{{ID: node.MustParse("C0A80102")}},
	}
	dir := testMount(t, src)
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	if got, want := strings.Join(names, " "), "C0A80102 by-ip default"; got != want {
		t.Errorf("ls = %q, want %q", got, want)
	}
	target, err := os.Readlink(filepath.Join(dir, "by-ip", "192.168.1.2"))
	if err != nil || target != "/netboot/node/C0A80102" {
		t.Errorf("by-ip link = %q, %v", target, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "by-ip", "192.168.1.3")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("unknown by-ip entry: %v, want ENOENT", err)
	}
}

// TestMountContentChange checks that a new open sees new content with the
// exact new size, with no wait, even when the change is not announced.
func TestMountContentChange(t *testing.T) {
	src := &fakeSource{files: map[string][]byte{"C0A80102": []byte("short\n")}}
	dir := testMount(t, src)
	p := filepath.Join(dir, "C0A80102")
	if got, _ := os.ReadFile(p); string(got) != "short\n" {
		t.Fatalf("first read %q", got)
	}
	src.set("C0A80102", "a much longer config than before\n")
	if got, _ := os.ReadFile(p); string(got) != "a much longer config than before\n" {
		t.Fatalf("read after change %q", got)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != int64(len("a much longer config than before\n")) {
		t.Fatalf("stat after change: %v, %v", fi, err)
	}
}

// TestOpenKeepsItsVersion: an open descriptor keeps the version it opened,
// size and bytes, whatever the name holds later, as on a plain filesystem
// whose file is replaced by rename; a new open gets the new version.
func TestOpenKeepsItsVersion(t *testing.T) {
	for _, stable := range []bool{false, true} {
		t.Run(fmt.Sprintf("stable=%v", stable), func(t *testing.T) {
			src := &fakeSource{stable: stable, files: map[string][]byte{"C0A80102": []byte("old\n")}}
			dir := testMount(t, src)
			p := filepath.Join(dir, "C0A80102")
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			src.change("C0A80102", "new, and longer\n")
			fi, err := f.Stat()
			if err != nil || fi.Size() != 4 {
				t.Fatalf("fstat of the old open after the change: %v, %v; want size 4", fi, err)
			}
			if b, err := io.ReadAll(f); err != nil || string(b) != "old\n" {
				t.Fatalf("read of the old open after the change: %q, %v", b, err)
			}
			if b, err := os.ReadFile(p); err != nil || string(b) != "new, and longer\n" {
				t.Fatalf("a new open after the change: %q, %v", b, err)
			}
		})
	}
}

func TestMountConcurrentReaders(t *testing.T) {
	want := bytes.Repeat([]byte("APPEND nfsroot=/n/C0A80102\n"), 100)
	src := &fakeSource{files: map[string][]byte{"C0A80102": want, "default": []byte("d")}}
	dir := testMount(t, src)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				f, err := os.Open(filepath.Join(dir, "C0A80102"))
				if err != nil {
					errs <- err
					return
				}
				fi, err := f.Stat()
				if err != nil {
					f.Close()
					errs <- err
					return
				}
				got := make([]byte, fi.Size()+10)
				n, _ := f.ReadAt(got, 0)
				f.Close()
				if fi.Size() != int64(len(want)) || !bytes.Equal(got[:n], want) {
					errs <- fmt.Errorf("fstat %d, read %d bytes, want %d", fi.Size(), n, len(want))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMountStableCaching: the kernel caches a stable name's attributes and
// pages (a warm node's fetch costs one OPEN), and still every open's fstat
// announces exactly the size its reads return: after an announced change
// (a reload), after an unannounced one that only an open can see (a
// node's fsid changed), and while changes race with readers.
func TestMountStableCaching(t *testing.T) {
	src := &fakeSource{stable: true, files: map[string][]byte{"C0A80102": []byte("first\n")}}
	dir := testMount(t, src)
	p := filepath.Join(dir, "C0A80102")

	fetch := func() (int64, string) {
		t.Helper()
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size(), string(b)
	}
	want := func(what, content string) {
		t.Helper()
		size, got := fetch()
		if got != content || size != int64(len(content)) {
			t.Fatalf("%s: fstat %d, read %q; want %d, %q", what, size, got, len(content), content)
		}
	}

	want("first fetch", "first\n")
	peeks := src.peeks.Load()
	for range 5 {
		want("warm fetch", "first\n")
	}
	if got := src.peeks.Load(); got != peeks {
		t.Errorf("warm fetches looked the name up %d times, want 0 (cached)", got-peeks)
	}

	src.change("C0A80102", "after a reload, longer\n")
	want("after an announced change", "after a reload, longer\n")

	src.set("C0A80102", "seen by open only\n")
	want("after an unannounced change", "seen by open only\n")

	// Races: readers fetch while the content flips between two sizes,
	// announced and not. Every fetch gets one version, its fstat size
	// and its bytes, as on a plain filesystem whose file is replaced by
	// rename. An open that meets two changes in a row (its lookup and
	// its retried lookup each overtaken) may fail with ESTALE; that is
	// counted, not a mix.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var fetches, mixed, stale atomic.Int64
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				f, err := os.Open(p)
				if errors.Is(err, syscall.ESTALE) {
					stale.Add(1)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				fi, err := f.Stat()
				var b []byte
				if err == nil {
					b, err = io.ReadAll(f)
				}
				f.Close()
				if err != nil {
					t.Error(err)
					return
				}
				fetches.Add(1)
				if fi.Size() != int64(len(b)) || (len(b) != 10 && len(b) != 60) || strings.Trim(string(b), "x") != "" {
					if mixed.Add(1) <= 3 {
						t.Logf("mixed: fstat %d, read %d bytes %q", fi.Size(), len(b), b)
					}
				}
			}
		})
	}
	for i := range 200 {
		c := strings.Repeat("x", 10+i%2*50)
		if i%3 == 0 {
			src.set("C0A80102", c)
		} else {
			src.change("C0A80102", c)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d fetches during 200 changes; %d opens overtaken twice (ESTALE)", fetches.Load(), stale.Load())
	if mixed.Load() != 0 {
		t.Errorf("%d of %d fetches mixed two versions", mixed.Load(), fetches.Load())
	}
	for range 8 {
		want("after the races", strings.Repeat("x", 60))
	}
	src.change("C0A80102", "final\n")
	for range 8 {
		want("after the races", "final\n")
	}
}
