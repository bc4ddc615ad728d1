package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// name returns the i-th test node, 10.0.0.0 + i.
func name(i int) node.ID { return node.FromUint32(uint32(0x0A000000 + i)) }

func openT(t testing.TB, opts Options) *Registry {
	t.Helper()
	r, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func mustAllocate(t testing.TB, r *Registry, id node.ID, used map[uint32]string) Record {
	t.Helper()
	n, _, err := r.Allocate(id, "", used)
	if err != nil {
		t.Fatalf("Allocate(%s): %v", id, err)
	}
	return n
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	r := openT(t, Options{Dir: dir, StartFSID: 100})
	boot := time.Date(2025, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	for i := range 3 {
		n, created, err := r.Allocate(name(i), "AA-BB-CC-00-00-0"+fmt.Sprint(i), nil)
		if err != nil || !created {
			t.Fatalf("Allocate(%s) = %v, %v, %v", name(i), n, created, err)
		}
	}
	if err := r.RecordBoot(name(0), boot, ""); err != nil {
		t.Fatal(err)
	}
	if err := r.RecordBoot(name(0), boot.Add(time.Hour), "aa:bb:cc:00:00:09"); err != nil {
		t.Fatal(err)
	}
	if err := r.RecordError(name(1), "export failed"); err != nil {
		t.Fatal(err)
	}
	if err := r.Forget(name(2)); err != nil {
		t.Fatal(err)
	}
	before := toJSON(t, r.All())
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state_dir mode = %v, %v; want 0700", fi.Mode(), err)
	}
	r2 := openT(t, Options{Dir: dir, StartFSID: 100})
	if after := toJSON(t, r2.All()); after != before {
		t.Errorf("after reopen:\n%s\nwant\n%s", after, before)
	}
	n0, _ := r2.Get(name(0))
	if n0.FSID != 100 || n0.ID.Addr().String() != "10.0.0.0" || n0.MAC != "aa:bb:cc:00:00:09" || n0.BootCount != 2 ||
		!n0.LastBoot.Equal(boot.Add(time.Hour)) || n0.Created.IsZero() {
		t.Errorf("node 0 = %+v", n0)
	}
	n1, _ := r2.Get(name(1))
	if n1.FSID != 101 || n1.LastError != "export failed" || n1.MAC != "aa:bb:cc:00:00:01" || !n1.LastBoot.IsZero() {
		t.Errorf("node 1 = %+v", n1)
	}
	if _, ok := r2.Get(name(2)); ok || r2.Len() != 2 {
		t.Errorf("forgotten node still present (len %d)", r2.Len())
	}
	if got := r2.Retired(); len(got) != 1 || got[0] != 102 {
		t.Errorf("Retired() = %v, want [102]", got)
	}
	if err := r2.RecordError(name(1), ""); err != nil {
		t.Fatal(err)
	}
	if n1, _ := r2.Get(name(1)); n1.LastError != "" {
		t.Errorf("RecordError(\"\") left %q", n1.LastError)
	}

	b, err := os.ReadFile(filepath.Join(dir, fileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"version": 1`, `"retired_fsids": [`, `"node": "0A000001"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("nodes.json lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), `"last_boot": "0001`) {
		t.Errorf("zero last_boot written:\n%s", b)
	}
}

func TestAllocateLowestFree(t *testing.T) {
	type step struct {
		op   string // "alloc", "forget" or "reopen"
		node int
		used map[uint32]string
		want uint32 // fsid expected from "alloc"
	}
	cases := []struct {
		name  string
		start uint32
		steps []step
	}{
		{"from start", 100, []step{
			{op: "alloc", node: 0, want: 100},
			{op: "alloc", node: 1, want: 101},
			{op: "alloc", node: 2, want: 102},
		}},
		{"start 0 means 1", 0, []step{
			{op: "alloc", node: 0, want: 1},
			{op: "alloc", node: 1, want: 2},
		}},
		{"skips used", 10, []step{
			{op: "alloc", node: 0, used: map[uint32]string{10: "/srv/a", 12: "/srv/b"}, want: 11},
			{op: "alloc", node: 1, used: map[uint32]string{10: "/srv/a", 12: "/srv/b"}, want: 13},
			// once 10 is no longer used elsewhere it is the lowest free one
			{op: "alloc", node: 2, want: 10},
		}},
		{"skips retired, also after reopen", 1, []step{
			{op: "alloc", node: 0, want: 1},
			{op: "alloc", node: 1, want: 2},
			{op: "alloc", node: 2, want: 3},
			{op: "forget", node: 1},
			{op: "alloc", node: 3, want: 4},
			{op: "reopen"},
			{op: "alloc", node: 4, want: 5},
			// a forgotten node that comes back gets a new fsid
			{op: "alloc", node: 1, want: 6},
		}},
		{"skips used and retired together", 1, []step{
			{op: "alloc", node: 0, want: 1},
			{op: "forget", node: 0},
			{op: "alloc", node: 1, used: map[uint32]string{2: "/x"}, want: 3},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Dir: t.TempDir(), StartFSID: tc.start}
			r := openT(t, opts)
			for i, s := range tc.steps {
				switch s.op {
				case "alloc":
					n, created, err := r.Allocate(name(s.node), "", s.used)
					if err != nil || !created || n.FSID != s.want {
						t.Fatalf("step %d: Allocate(%s) = fsid %d, created %v, %v; want fsid %d, created",
							i, name(s.node), n.FSID, created, err, s.want)
					}
				case "forget":
					if err := r.Forget(name(s.node)); err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
				case "reopen":
					if err := r.Close(); err != nil {
						t.Fatal(err)
					}
					r = openT(t, opts)
				}
			}
		})
	}
}

func TestAllocateExisting(t *testing.T) {
	r := openT(t, Options{Dir: t.TempDir()})
	first, created, err := r.Allocate(node.MustParse("C0A80102"), "aa:bb:cc:dd:ee:ff", nil)
	if err != nil || !created {
		t.Fatalf("Allocate = %v, %v", created, err)
	}
	// A different MAC and a used map that covers the fsid change nothing: the
	// fsid is kept forever.
	again, created, err := r.Allocate(node.MustParse("C0A80102"), "11:22:33:44:55:66", map[uint32]string{first.FSID: "/srv"})
	if err != nil || created || again != first {
		t.Errorf("second Allocate = %+v, created %v, %v; want %+v, not created", again, created, err, first)
	}
	if r.Len() != 1 {
		t.Errorf("Len = %d, want 1", r.Len())
	}
}

func TestAllocateInvalid(t *testing.T) {
	// Names are node.IDs, so a malformed name cannot reach the registry;
	// what is left to refuse is the zero ID and a bad MAC.
	r := openT(t, Options{Dir: t.TempDir()})
	cases := []struct {
		name string
		id   node.ID
		mac  string
		want string
	}{
		{"no node", node.ID{}, "", "no node given"},
		{"bad mac", node.MustParse("C0A80102"), "zz:zz", "invalid MAC"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := r.Allocate(tc.id, tc.mac, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Allocate(%v, %q) = %v, want error containing %q", tc.id, tc.mac, err, tc.want)
			}
		})
	}
	if r.Len() != 0 {
		t.Errorf("Len = %d after invalid calls", r.Len())
	}
}

func TestMaxNodes(t *testing.T) {
	r := openT(t, Options{Dir: t.TempDir(), MaxNodes: 2})
	mustAllocate(t, r, name(0), nil)
	mustAllocate(t, r, name(1), nil)
	_, _, err := r.Allocate(name(2), "", nil)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "max_nodes 2 reached") {
		t.Fatalf("third Allocate = %v, want ErrFull with max_nodes 2 reached", err)
	}
	if _, created, err := r.Allocate(name(1), "", nil); err != nil || created {
		t.Errorf("known node when full: created %v, %v", created, err)
	}
	if err := r.Forget(name(0)); err != nil {
		t.Fatal(err)
	}
	if n := mustAllocate(t, r, name(2), nil); n.FSID != 3 {
		t.Errorf("after Forget: fsid %d, want 3", n.FSID)
	}
	if _, err := Open(Options{Dir: t.TempDir(), MaxNodes: -1}); err == nil {
		t.Error("negative MaxNodes accepted")
	}
}

func TestLockInProcess(t *testing.T) {
	dir := t.TempDir()
	r := openT(t, Options{Dir: dir})
	_, err := Open(Options{Dir: dir})
	want := fmt.Sprintf("state_dir %s is in use by another pxebootfs (pid %d)", dir, os.Getpid())
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), want) {
		t.Fatalf("second Open = %v, want ErrInUse with %q", err, want)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2 := openT(t, Options{Dir: dir})
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	node := func(name, ip string, fsid int) string {
		return fmt.Sprintf(`{"node":%q,"ip":%q,"fsid":%d,"created":"2025-01-01T00:00:00Z","boot_count":0}`, name, ip, fsid)
	}
	file := func(retired string, nodes ...string) string {
		return `{"version":1,"nodes":[` + strings.Join(nodes, ",") + `],"retired_fsids":[` + retired + `]}`
	}
	cases := []struct {
		name, content, want string
	}{
		{"garbage", "not json at all", "parse"},
		{"empty file", "", "parse"},
		{"truncated", file("", node("0A000001", "10.0.0.1", 1))[:40], "parse"},
		{"trailing data", file("") + "{}", "parse"},
		{"wrong version", `{"version":2,"nodes":[]}`, "unsupported version 2"},
		{"duplicate fsid", file("", node("0A000001", "10.0.0.1", 7), node("0A000002", "10.0.0.2", 7)),
			"fsid 7 used by both 0A000001 and 0A000002"},
		{"duplicate node", file("", node("0A000001", "10.0.0.1", 1), node("0A000001", "10.0.0.1", 2)),
			"node 0A000001 listed twice"},
		{"lower-case name", file("", node("0a000001", "10.0.0.1", 1)), "upper-case"},
		{"not a name", file("", node("10.0.0.1", "10.0.0.1", 1)), "not a node"},
		{"ip mismatch", file("", node("0A000001", "10.0.0.9", 1)), "does not match"},
		{"retired fsid in use", file("1", node("0A000001", "10.0.0.1", 1)), "fsid 1 of node 0A000001 is also listed as retired"},
		{"retired fsid 0", file("0"), "retired fsid 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, fileName)
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, open := range []struct {
				name string
				fn   func() (*Registry, error)
			}{
				{"Open", func() (*Registry, error) { return Open(Options{Dir: dir}) }},
				{"OpenReadOnly", func() (*Registry, error) { return OpenReadOnly(dir) }},
			} {
				r, err := open.fn()
				if err == nil {
					r.Close()
					t.Fatalf("%s succeeded on %q", open.name, tc.content)
				}
				if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s = %v, want error naming %s and containing %q", open.name, err, path, tc.want)
				}
				if errors.Is(err, ErrInUse) {
					t.Errorf("%s: a failed Open kept the lock", open.name)
				}
			}
			if b, err := os.ReadFile(path); err != nil || string(b) != tc.content {
				t.Errorf("bad file was changed: %q, %v", b, err)
			}
		})
	}
}

func TestStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	r := openT(t, Options{Dir: dir})
	mustAllocate(t, r, name(0), nil)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "."+fileName+".tmp-12345")
	if err := os.WriteFile(stale, []byte(`{"version":1,"nod`), 0o600); err != nil {
		t.Fatal(err)
	}
	// A journal rewrite (compaction) a crash interrupted leaves one too.
	staleJournal := filepath.Join(dir, "."+journalName+".tmp-6789")
	if err := os.WriteFile(staleJournal, []byte(`{"ba`), 0o600); err != nil {
		t.Fatal(err)
	}

	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatalf("OpenReadOnly with a stale temp file: %v", err)
	}
	if ro.Len() != 1 {
		t.Errorf("OpenReadOnly Len = %d, want 1", ro.Len())
	}
	if _, err := os.Stat(stale); err != nil {
		t.Errorf("OpenReadOnly touched the temp file: %v", err)
	}

	r = openT(t, Options{Dir: dir})
	if r.Len() != 1 {
		t.Errorf("Open Len = %d, want 1", r.Len())
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file not removed by Open: %v", err)
	}
	if _, err := os.Stat(staleJournal); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale journal temp file not removed by Open: %v", err)
	}
}

func TestOpenReadOnly(t *testing.T) {
	dir := t.TempDir()
	r := openT(t, Options{Dir: dir})
	want := mustAllocate(t, r, name(0), nil)

	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatalf("OpenReadOnly while locked: %v", err)
	}
	if got, ok := ro.Get(name(0)); !ok || toJSON(t, got) != toJSON(t, want) {
		t.Errorf("read-only Get = %+v, %v; want %+v", got, ok, want)
	}
	mutations := map[string]func() error{
		"Allocate":    func() error { _, _, err := ro.Allocate(name(1), "", nil); return err },
		"RecordBoot":  func() error { return ro.RecordBoot(name(0), time.Now(), "") },
		"RecordError": func() error { return ro.RecordError(name(0), "x") },
		"Forget":      func() error { return ro.Forget(name(0)) },
	}
	for what, fn := range mutations {
		t.Run(what, func(t *testing.T) {
			if err := fn(); !errors.Is(err, ErrReadOnly) {
				t.Errorf("%s on read-only registry = %v, want ErrReadOnly", what, err)
			}
		})
	}
	if err := ro.Close(); err != nil {
		t.Errorf("read-only Close: %v", err)
	}
	// The read-only view must not have released the daemon's lock.
	if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrInUse) {
		t.Errorf("Open after read-only Close = %v, want ErrInUse", err)
	}

	empty := t.TempDir()
	if ro, err := OpenReadOnly(empty); err != nil || ro.Len() != 0 {
		t.Errorf("OpenReadOnly of an empty state_dir = %v", err)
	}
	if _, err := OpenReadOnly(filepath.Join(empty, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenReadOnly of a missing state_dir = %v, want ErrNotExist", err)
	}
}

func TestUnknownNodeAndClosed(t *testing.T) {
	r := openT(t, Options{Dir: t.TempDir()})
	mustAllocate(t, r, name(0), nil)
	calls := []struct {
		name string
		fn   func() error
	}{
		{"RecordBoot", func() error { return r.RecordBoot(name(9), time.Now(), "") }},
		{"RecordError", func() error { return r.RecordError(name(9), "x") }},
		{"Forget", func() error { return r.Forget(name(9)) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.fn(); !errors.Is(err, ErrUnknownNode) || !strings.Contains(err.Error(), name(9).String()) {
				t.Errorf("%s(unknown) = %v, want ErrUnknownNode naming the node", c.name, err)
			}
		})
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, _, err := r.Allocate(name(1), "", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Allocate after Close = %v, want ErrClosed", err)
	}
	if err := r.RecordBoot(name(0), time.Now(), ""); !errors.Is(err, ErrClosed) {
		t.Errorf("RecordBoot after Close = %v, want ErrClosed", err)
	}
}

func TestConcurrentAllocate(t *testing.T) {
	const n = 200
	dir := t.TempDir()
	r := openT(t, Options{Dir: dir, StartFSID: 1000})
	type result struct {
		node    Record
		created bool
		err     error
	}
	// Every node is asked for twice at once: exactly one call creates it and
	// both must see the same fsid.
	results := make([]result, 2*n)
	var wg sync.WaitGroup
	for i := range 2 * n {
		wg.Go(func() {
			nd, created, err := r.Allocate(name(i%n), "", nil)
			results[i] = result{nd, created, err}
		})
	}
	wg.Wait()

	seen := make(map[uint32]node.ID)
	for i := range n {
		a, b := results[i], results[i+n]
		if a.err != nil || b.err != nil {
			t.Fatalf("Allocate(%s): %v, %v", name(i), a.err, b.err)
		}
		if a.created == b.created || a.node.FSID != b.node.FSID {
			t.Errorf("%s: created %v/%v, fsid %d/%d", name(i), a.created, b.created, a.node.FSID, b.node.FSID)
		}
		if other, dup := seen[a.node.FSID]; dup {
			t.Errorf("fsid %d given to %s and %s", a.node.FSID, other, name(i))
		}
		seen[a.node.FSID] = name(i)
	}
	// Lowest-free allocation packs the fsids densely.
	for id := uint32(1000); id < 1000+n; id++ {
		if _, ok := seen[id]; !ok {
			t.Errorf("fsid %d not allocated", id)
		}
	}
	before := toJSON(t, r.All())
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2 := openT(t, Options{Dir: dir, StartFSID: 1000})
	if toJSON(t, r2.All()) != before {
		t.Error("state after reopen differs from state before Close")
	}
}

func TestBootStorm(t *testing.T) {
	const n, boots = 1000, 2
	dir := t.TempDir()
	r := openT(t, Options{Dir: dir})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, _, err := r.Allocate(name(i), "", nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	writesBefore := r.writes
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	errs := make([]error, n*boots)
	for i := range n * boots {
		wg.Go(func() { errs[i] = r.RecordBoot(name(i%n), at, "") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d RecordBoot calls took %d writes", n*boots, r.writes-writesBefore)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2 := openT(t, Options{Dir: dir})
	for _, nd := range r2.All() {
		if nd.BootCount != boots || !nd.LastBoot.Equal(at) {
			t.Errorf("%s: boot count %d, last boot %v; want %d, %v", nd.ID, nd.BootCount, nd.LastBoot, boots, at)
		}
	}
}

// TestGroupCommit holds one write in flight while more changes queue up
// behind it, and checks that a single further write makes them all durable.
func TestGroupCommit(t *testing.T) {
	const n = 50
	r := openT(t, Options{Dir: t.TempDir()})
	for i := range n + 1 {
		mustAllocate(t, r, name(i), nil)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.mu.Lock()
	r.beforeWrite = func() error {
		once.Do(func() {
			close(entered)
			<-release
		})
		return nil
	}
	writesBefore := r.writes
	r.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, n+1)
	wg.Go(func() { errs[n] = r.RecordError(name(n), "failed") })
	<-entered
	for i := range n {
		wg.Go(func() { errs[i] = r.RecordError(name(i), "failed") })
	}
	// Wait (without a deadline) until every caller is parked behind the
	// blocked write.
	for {
		r.mu.Lock()
		w := r.waiting
		r.mu.Unlock()
		if w == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := r.writes - writesBefore; got != 2 {
		t.Errorf("%d writes for one blocked write plus %d queued changes, want 2", got, n)
	}
	ro, err := OpenReadOnly(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range ro.All() {
		if nd.LastError != "failed" {
			t.Errorf("%s: last error %q on disk, want it written", nd.ID, nd.LastError)
		}
	}
}

// TestBootRecordsLazy: a node's first boot is on disk when RecordBoot
// returns (restore brings back the nodes that booted); a later boot record
// returns without a write and reaches the disk within bootFlushDelay, or at
// Close.
func TestBootRecordsLazy(t *testing.T) {
	for _, closeFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("close=%v", closeFirst), func(t *testing.T) {
			dir := t.TempDir()
			r := openT(t, Options{Dir: dir})
			mustAllocate(t, r, name(0), nil)
			if err := r.RecordBoot(name(0), time.Now(), ""); err != nil {
				t.Fatal(err)
			}
			ro, err := OpenReadOnly(dir)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := ro.Get(name(0)); n.BootCount != 1 {
				t.Fatalf("first boot: boot count %d on disk, want 1", n.BootCount)
			}
			r.mu.Lock()
			writes := r.writes
			r.mu.Unlock()
			if err := r.RecordBoot(name(0), time.Now(), ""); err != nil {
				t.Fatal(err)
			}
			r.mu.Lock()
			got := r.writes - writes
			r.mu.Unlock()
			if got != 0 {
				t.Errorf("a second RecordBoot wrote %d times before returning, want 0", got)
			}
			if n, _ := r.Get(name(0)); n.BootCount != 2 {
				t.Errorf("boot count %d in memory, want 2", n.BootCount)
			}
			if closeFirst {
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(bootFlushDelay + 5*time.Second)
			for {
				ro, err := OpenReadOnly(dir)
				if err != nil {
					t.Fatal(err)
				}
				if n, _ := ro.Get(name(0)); n.BootCount == 2 {
					return
				}
				if closeFirst || time.Now().After(deadline) {
					t.Fatal("boot record not on disk")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

func TestWriteFailure(t *testing.T) {
	dir := t.TempDir()
	r := openT(t, Options{Dir: dir})
	injected := errors.New("injected: no space left on device")
	setFail := func(fail bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.beforeWrite = nil
		if fail {
			r.beforeWrite = func() error { return injected }
		}
	}

	setFail(true)
	if _, _, err := r.Allocate(name(0), "", nil); !errors.Is(err, injected) {
		t.Fatalf("Allocate with failing write = %v, want the write error", err)
	}
	// Still failing: asking again for the same node must not pretend it is
	// on disk.
	if _, _, err := r.Allocate(name(0), "", nil); !errors.Is(err, injected) {
		t.Fatalf("second Allocate with failing write = %v, want the write error", err)
	}
	if ro, err := OpenReadOnly(dir); err != nil || ro.Len() != 0 {
		t.Fatalf("on disk after failed writes: %v nodes, %v", ro.Len(), err)
	}
	setFail(false)
	n, created, err := r.Allocate(name(0), "", nil)
	if err != nil || created || n.FSID != 1 {
		t.Fatalf("Allocate after recovery = fsid %d, created %v, %v; want fsid 1, not created", n.FSID, created, err)
	}
	if ro, err := OpenReadOnly(dir); err != nil || ro.Len() != 1 {
		t.Fatalf("node not on disk after recovery: %v", err)
	}

	// A change whose write failed is written by Close.
	setFail(true)
	if err := r.RecordError(name(0), "boom"); !errors.Is(err, injected) {
		t.Fatalf("RecordError with failing write = %v", err)
	}
	setFail(false)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2 := openT(t, Options{Dir: dir})
	if n, _ := r2.Get(name(0)); n.LastError != "boom" {
		t.Errorf("last error %q after Close flushed, want it written", n.LastError)
	}
}

func BenchmarkAllocate(b *testing.B) {
	r := openT(b, Options{Dir: b.TempDir()})
	i := 0
	for b.Loop() {
		mustAllocate(b, r, name(i), nil)
		i++
	}
}

func BenchmarkRecordBoot(b *testing.B) {
	const n = 1000
	r := openT(b, Options{Dir: b.TempDir()})
	for i := range n {
		mustAllocate(b, r, name(i), nil)
	}
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if err := r.RecordBoot(name(i%n), time.Now(), ""); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(16) // a boot storm: many more callers than CPUs
		var mu sync.Mutex
		next := 0
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if err := r.RecordBoot(name(i%n), time.Now(), ""); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// A node entering install mode before it ever got a root has a record
// without an fsid: it survives a restart (through the journal and through
// a snapshot), gets its fsid when it first needs a root, and forgetting it
// retires nothing.
func TestInstallOnlyRecords(t *testing.T) {
	dir := t.TempDir()
	r := openT(t, Options{Dir: dir, StartFSID: 10})
	setPending := func(n *Record) (bool, error) {
		n.Install = Install{State: InstallPending, Token: "0123456789abcdef0123456789abcdef"}
		return true, nil
	}
	if _, err := r.Change(name(1), false, setPending); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("Change of an unknown node without create: %v, want ErrUnknownNode", err)
	}
	rec, err := r.Change(name(1), true, setPending)
	if err != nil || rec.FSID != 0 || rec.Install.State != InstallPending {
		t.Fatalf("Change(create) = %+v, %v", rec, err)
	}
	if _, err := r.Change(name(1), false, func(n *Record) (bool, error) { n.FSID = 99; return true, nil }); err == nil {
		t.Fatal("Change may not set an fsid")
	}
	refuse := errors.New("refused")
	if _, err := r.Change(name(1), false, func(n *Record) (bool, error) { n.Install.State = InstallDone; return true, refuse }); err != refuse {
		t.Fatalf("a refused change: %v", err)
	}
	mustAllocate(t, r, name(2), nil) // fsid 10
	if _, err := r.Change(name(3), true, setPending); err != nil {
		t.Fatal(err)
	}
	// Through the journal.
	r.Close()
	r = openT(t, Options{Dir: dir, StartFSID: 10})
	if got, _ := r.Get(name(1)); got.FSID != 0 || got.Install.State != InstallPending || got.Install.Token == "" {
		t.Fatalf("after reopen: %+v", got)
	}
	rec, created, err := r.Allocate(name(1), "52:54:00:00:00:01", nil)
	if err != nil || !created || rec.FSID != 11 || rec.Install.State != InstallPending || rec.MAC != "52:54:00:00:00:01" {
		t.Fatalf("Allocate of an install-only node = %+v, %v, %v; want fsid 11, install kept", rec, created, err)
	}
	if rec2, created, _ := r.Allocate(name(1), "", nil); created || rec2.FSID != 11 {
		t.Fatalf("second Allocate = %+v, %v", rec2, created)
	}
	if err := r.Forget(name(3)); err != nil {
		t.Fatal(err)
	}
	if ret := r.Retired(); len(ret) != 0 {
		t.Fatalf("forgetting a node without a root retired %v", ret)
	}
	// Through a snapshot and a journal holding a forget of fsid 0.
	r.Close()
	for _, ro := range []bool{true, false} {
		var r2 *Registry
		if ro {
			r2, err = OpenReadOnly(dir)
			if err != nil {
				t.Fatal(err)
			}
		} else {
			r2 = openT(t, Options{Dir: dir, StartFSID: 10})
		}
		if r2.Len() != 2 {
			t.Fatalf("reopened: %d nodes, want 2", r2.Len())
		}
		if got := mustGet(t, r2, name(1)); got.FSID != 11 {
			t.Fatalf("reopened: %+v", got)
		}
		r2.Close()
	}
}

func mustGet(t *testing.T, r *Registry, id node.ID) Record {
	t.Helper()
	rec, ok := r.Get(id)
	if !ok {
		t.Fatalf("%s unknown", id)
	}
	return rec
}

func TestSummary(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"  disk sda not found \nmore", "disk sda not found"},
		{long, strings.Repeat("x", 256) + "…"},
	} {
		if got := Summary(tc.in); got != tc.want {
			t.Errorf("Summary(%.20q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
