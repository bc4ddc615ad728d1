package registry

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// journalSize is the size of dir's journal now.
func journalSize(t testing.TB, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestMigrateNodesJSON: a state_dir of a version without the journal (a
// nodes.json without seq) opens with every node, fsid and retired fsid.
func TestMigrateNodesJSON(t *testing.T) {
	dir := t.TempDir()
	old := `{"version":1,"nodes":[{"node":"0A000001","ip":"10.0.0.1","fsid":7,"created":"2025-01-01T00:00:00Z","boot_count":3}],"retired_fsids":[5]}`
	if err := os.WriteFile(filepath.Join(dir, fileName), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	r := openT(t, Options{Dir: dir, StartFSID: 5})
	if n, ok := r.Get(name(1)); !ok || n.FSID != 7 || n.BootCount != 3 {
		t.Fatalf("migrated node = %+v, %v", n, ok)
	}
	if n := mustAllocate(t, r, name(2), nil); n.FSID != 6 {
		t.Errorf("new node got fsid %d, want 6 (5 retired, 7 used)", n.FSID)
	}
	if _, err := os.Stat(filepath.Join(dir, journalName)); err != nil {
		t.Errorf("no journal after Open: %v", err)
	}
}

// TestJournalReplay: changes not yet in a snapshot are read back from the
// journal, by a reader without the lock and after a crash (no Close).
func TestJournalReplay(t *testing.T) {
	dir := t.TempDir()
	r := openT(t, Options{Dir: dir, StartFSID: 100})
	for i := range 5 {
		mustAllocate(t, r, name(i), nil)
	}
	if err := r.RecordBoot(name(1), time.Now(), "aa:bb:cc:dd:ee:ff"); err != nil {
		t.Fatal(err)
	}
	if err := r.Forget(name(2)); err != nil {
		t.Fatal(err)
	}
	if err := r.SetReleased(name(3), true); err != nil {
		t.Fatal(err)
	}
	want := toJSON(t, r.All())
	ro, err := OpenReadOnly(dir)
	if err != nil || toJSON(t, ro.All()) != want || len(ro.Retired()) != 1 {
		t.Fatalf("read-only view of the journal: %v\n%s\nwant\n%s", err, toJSON(t, ro.All()), want)
	}
	// A crash: the lock goes with the process, nothing is compacted.
	r.mu.Lock()
	r.closed, r.released = true, true
	r.mu.Unlock()
	unlockDir(r.lock)
	r2 := openT(t, Options{Dir: dir, StartFSID: 100})
	if got := toJSON(t, r2.All()); got != want {
		t.Errorf("after a crash:\n%s\nwant\n%s", got, want)
	}
	if n := mustAllocate(t, r2, name(9), nil); n.FSID != 105 {
		t.Errorf("fsid after replay %d, want 105 (102 is retired)", n.FSID)
	}
}

// TestJournalTornAndCorrupt: a last line a crash cut short is ignored; a
// broken line before it is an error naming the file and line.
func TestJournalTornAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	r := openT(t, Options{Dir: dir})
	mustAllocate(t, r, name(0), nil)
	r.mu.Lock()
	r.closed, r.released = true, true
	r.mu.Unlock()
	unlockDir(r.lock)
	path := filepath.Join(dir, journalName)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	torn := string(good) + `{"seq":99,"put":{"node":"0A00`
	if err := os.WriteFile(path, []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(dir)
	if err != nil || ro.Len() != 1 {
		t.Fatalf("torn last line: %v, %d nodes", err, ro.Len())
	}
	corrupt := string(good) + "garbage\n" + `{"seq":99,"forget":"0A000000","fsid":1}` + "\n"
	if err := os.WriteFile(path, []byte(corrupt), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), journalName+":3") {
		t.Errorf("corrupt journal opened: %v", err)
	}
}

// TestJournalCostPerChange: a change appends one line, whatever the number
// of nodes (the JSON file used to be rewritten whole), and the journal is
// compacted into the snapshot once it is large.
func TestJournalCostPerChange(t *testing.T) {
	perBoot := func(nodes int) int64 {
		dir := t.TempDir()
		r := openT(t, Options{Dir: dir})
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() { mustAllocate(t, r, name(i), nil) })
		}
		wg.Wait()
		at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		before := journalSize(t, dir)
		for range 10 {
			if err := r.RecordBoot(name(0), at, ""); err != nil {
				t.Fatal(err)
			}
			if err := r.flush(); err != nil {
				t.Fatal(err)
			}
		}
		return (journalSize(t, dir) - before) / 10
	}
	small, large := perBoot(10), perBoot(3000)
	t.Logf("bytes written per boot: %d with 10 nodes, %d with 3000", small, large)
	// The lines differ only by the digits of their sequence numbers.
	if d := large - small; d < 0 || d > 8 || small > 400 {
		t.Errorf("a boot writes %d bytes with 10 nodes and %d with 3000; want the same, one line", small, large)
	}

	dir := t.TempDir()
	r := openT(t, Options{Dir: dir})
	r.minCompact = 4096
	for i := range 20 {
		mustAllocate(t, r, name(i), nil)
	}
	for range 400 {
		if err := r.RecordBoot(name(3), time.Now(), ""); err != nil {
			t.Fatal(err)
		}
		if err := r.flush(); err != nil {
			t.Fatal(err)
		}
	}
	if size, limit := journalSize(t, dir), max(r.minCompact, 4*r.snapBytes)+1024; size > limit {
		t.Errorf("journal is %d bytes (limit %d): never compacted", size, limit)
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := ro.Get(name(3)); n.BootCount != 400 || ro.Len() != 20 {
		t.Errorf("after compactions: %d nodes, boot count %d; want 20, 400", ro.Len(), n.BootCount)
	}
}

// TestReadWhileCompacting: a reader without the lock always sees a whole
// state while the writer compacts under it.
func TestReadWhileCompacting(t *testing.T) {
	dir := t.TempDir()
	r := openT(t, Options{Dir: dir})
	r.minCompact = 2048
	for i := range 10 {
		mustAllocate(t, r, name(i), nil)
	}
	done := make(chan struct{})
	var boots int
	go func() {
		defer close(done)
		for boots = 0; boots < 2000; boots++ {
			if err := r.RecordBoot(name(boots%10), time.Now(), ""); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var last uint64
	reads := 0
	for running := true; running; reads++ {
		select {
		case <-done:
			running = false
		default:
		}
		ro, err := OpenReadOnly(dir)
		if errors.Is(err, errJournalAhead) {
			continue // ten compactions in a row during one read: rare, allowed
		}
		if err != nil {
			t.Fatal(err)
		}
		var total uint64
		for _, n := range ro.All() {
			total += n.BootCount
		}
		if ro.Len() != 10 || total < last {
			t.Fatalf("a reader saw %d nodes and %d boots, after %d boots", ro.Len(), total, last)
		}
		last = total
	}
	t.Logf("%d reads during %d boots and their compactions", reads, boots)
}
