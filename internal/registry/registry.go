package registry

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/atomicfile"
	"github.com/pxebootfs/pxebootfs/internal/node"
)

// Record is one node's record.
type Record struct {
	ID  node.ID `json:"node"` // stored as its hex name, e.g. "C0A80102"
	MAC string  `json:"mac,omitempty"`
	// FSID is the node's NFS fsid; 0 until the node first gets a root (a
	// node known only for its install, as in config-only mode).
	FSID      uint32    `json:"fsid"`
	Created   time.Time `json:"created"`
	LastBoot  time.Time `json:"last_boot,omitzero"`
	BootCount uint64    `json:"boot_count"`
	LastError string    `json:"last_error,omitempty"`
	// Released is set by an admin's release: the node keeps its record,
	// fsid and data, but start-up does not mount or export it again until
	// it boots again.
	Released bool `json:"released,omitempty"`
	// Install is the node's install lifecycle; the zero value is none.
	Install Install `json:"install,omitzero"`
	// Root and RootGen pin the node to the root generation its writable
	// layer was made over (package roots); both empty: the config's
	// root_dir, as for every node made before named roots existed.
	Root    string `json:"root,omitempty"`
	RootGen string `json:"root_generation,omitempty"`
}

// InstallState is where a node is in its install lifecycle.
type InstallState string

// Install states. The zero value, InstallNone, is a node that serves its
// usual template.
const (
	InstallNone       InstallState = ""
	InstallPending    InstallState = "install"    // serve the install template
	InstallRunning    InstallState = "installing" // the installer called started
	InstallDone       InstallState = "installed"  // serve the local-boot config
	maxInstallSummary              = 256
)

// Install is a node's install state. Token is a secret: it is rendered into
// the node's install config and checked on every callback, so it is kept
// here, in a state_dir only root can read, and never logged in full.
type Install struct {
	State   InstallState `json:"state,omitempty"`
	Token   string       `json:"token,omitempty"`
	Changed time.Time    `json:"changed,omitzero"` // when State last changed
	// Served counts the install configs served since State last changed,
	// for the loop guard.
	Served uint32 `json:"served,omitempty"`
	// Failed is when the installer last reported failed; Error is the
	// first line of its report (the report itself is kept apart, see
	// package install).
	Failed time.Time `json:"failed,omitzero"`
	Error  string    `json:"error,omitempty"`
}

// IsInstalling reports whether the node is served its install template.
func (i Install) IsInstalling() bool {
	return i.State == InstallPending || i.State == InstallRunning
}

// Summary cuts an installer's report to the line kept in a Record.
func Summary(report string) string {
	line, _, _ := strings.Cut(report, "\n")
	line = strings.TrimSpace(line)
	if len(line) > maxInstallSummary {
		line = strings.ToValidUTF8(line[:maxInstallSummary], "") + "…"
	}
	return line
}

// Options configures [Open].
type Options struct {
	// Dir is the state_dir; it is created (mode 0700) if missing.
	Dir string
	// StartFSID is the lowest fsid handed out; 0 means 1 (fsid 0 is the
	// NFS root export's).
	StartFSID uint32
	// MaxNodes caps the number of known nodes; 0 means no cap.
	MaxNodes int
	// Logger receives start-up notes; nil discards them.
	Logger *slog.Logger
}

var (
	// ErrFull is returned (wrapped) by Allocate when a new node would
	// exceed Options.MaxNodes.
	ErrFull = errors.New("registry full")
	// ErrUnknownNode is returned (wrapped) for a node the registry does not
	// know.
	ErrUnknownNode = errors.New("unknown node")
	// ErrReadOnly is returned (wrapped) by mutating methods of a registry
	// from OpenReadOnly.
	ErrReadOnly = errors.New("registry opened read-only")
	// ErrUnavailable is wrapped by a store of shared state (cluster mode)
	// that cannot reach it: the change may succeed later.
	ErrUnavailable = errors.New("shared state unreachable")
	// ErrClosed is returned (wrapped) by mutating methods after Close.
	ErrClosed = errors.New("registry closed")
)

// Registry is the set of known nodes, backed by state_dir/nodes.json.
type Registry struct {
	dir      string
	start    uint32
	max      int
	log      *slog.Logger
	lock     *os.File // nil when read-only
	readOnly bool

	mu   sync.Mutex
	cond sync.Cond // on mu; broadcast when a write finishes
	st   *state
	// gen counts changes made in memory; durable is the newest generation
	// known to be on disk. A change is durable once durable >= its gen.
	gen, durable uint64
	writing      bool // a write is in flight (mu is released during it)
	closed       bool // Close was called: no more changes
	released     bool // the lock is gone: no more writes

	// The journal (see journal.go): pending holds the lines of changes made
	// in memory and not yet written; jf is the journal open for appending,
	// jsize its size, snapBytes the size of the last snapshot.
	pending   []byte
	jf        *os.File
	jsize     int64
	jempty    int64 // size of the journal holding no change (its base line)
	snapBytes int64
	// minCompact is the journal size below which it is not compacted
	// (minCompact by default; tests lower it).
	minCompact int64

	// cursor is the lowest fsid >= start not given out, or below it (it
	// is advanced lazily); see freeFSIDLocked. Under mu.
	cursor uint32

	// flushTimer writes boot records within bootFlushDelay.
	flushTimer *time.Timer

	// Instrumentation for tests of the group commit.
	writes  uint64 // write attempts made
	waiting int    // callers parked behind an in-flight write
	// beforeWrite, if set, runs at the start of each write attempt, outside
	// mu; a non-nil result fails the attempt.
	beforeWrite func() error
}

// Open locks opts.Dir and loads its nodes.json. It fails if another process
// (or another Registry in this one) holds the lock, and if the file exists
// but cannot be trusted.
func Open(opts Options) (*Registry, error) {
	if opts.Dir == "" {
		return nil, errors.New("open registry: no state_dir given")
	}
	if opts.MaxNodes < 0 {
		return nil, fmt.Errorf("open registry: max_nodes %d is negative", opts.MaxNodes)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open registry: create state_dir: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	r, err := openLocked(opts, log, lock)
	if err != nil {
		unlockDir(lock)
		return nil, fmt.Errorf("open registry: %w", err)
	}
	return r, nil
}

func openLocked(opts Options, log *slog.Logger, lock *os.File) (*Registry, error) {
	// Temp files of a snapshot or journal rewrite a crash interrupted.
	var stale []string
	for _, name := range []string{fileName, journalName} {
		files, err := atomicfile.RemoveStale(filepath.Join(opts.Dir, name))
		if err != nil {
			return nil, err
		}
		stale = append(stale, files...)
	}
	// Versions before atomicfile named their temp files without the dot.
	legacy, _ := filepath.Glob(filepath.Join(opts.Dir, fileName+".tmp-*"))
	for _, m := range legacy {
		if err := os.Remove(m); err == nil {
			stale = append(stale, m)
		}
	}
	if len(stale) > 0 {
		log.Warn("removed temp files of an interrupted registry write", "files", stale)
	}
	st, err := loadDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	start := opts.StartFSID
	if start == 0 {
		start = 1
	}
	r := &Registry{dir: opts.Dir, start: start, max: opts.MaxNodes, log: log, lock: lock, st: st, minCompact: minCompact}
	r.cond.L = &r.mu
	// Start from a fresh snapshot and an empty journal: this also migrates
	// a nodes.json of a version without the journal, and drops a journal
	// line a crash cut short.
	nodes, retired := r.snapshotLocked()
	if r.snapBytes, err = compact(opts.Dir, nodes, retired, st.seq); err != nil {
		return nil, err
	}
	if err := r.openJournal(); err != nil {
		return nil, err
	}
	log.Info("registry loaded", "state_dir", opts.Dir, "nodes", len(st.nodes), "retired_fsids", len(st.retired))
	return r, nil
}

// OpenReadOnly loads dir's snapshot and journal without taking the lock,
// for admin commands that must work whether or not a daemon runs. Both
// files are only ever replaced by rename and the journal only appended to,
// so it sees a complete state (a read that races a compaction is retried). Mutating methods of
// the result fail with ErrReadOnly. A missing dir is an error (a mistyped
// state_dir should not look like an empty one); a missing file is not.
func OpenReadOnly(dir string) (*Registry, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open registry read-only: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open registry read-only: %s is not a directory", dir)
	}
	st, err := loadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open registry read-only: %w", err)
	}
	r := &Registry{dir: dir, start: 1, log: slog.New(slog.DiscardHandler), readOnly: true, st: st}
	r.cond.L = &r.mu
	return r, nil
}

// Close writes any change not yet on disk (there is one only after a failed
// write) and releases the lock. Calling it again does nothing.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	if r.flushTimer != nil {
		r.flushTimer.Stop()
		r.flushTimer = nil
	}
	if r.readOnly {
		r.mu.Unlock()
		return nil
	}
	err := r.commitLocked(r.gen)
	if err == nil && r.jf != nil && r.jsize > r.jempty {
		// A clean shutdown leaves one complete nodes.json, as older
		// versions wrote it, and an empty journal.
		nodes, retired := r.snapshotLocked()
		_, err = compact(r.dir, nodes, retired, r.st.seq)
	}
	r.released = true
	if r.jf != nil {
		if cerr := r.jf.Close(); err == nil {
			err = cerr
		}
		r.jf = nil
	}
	r.mu.Unlock()
	if uerr := unlockDir(r.lock); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("close registry %s: %w", r.dir, err)
	}
	return nil
}

// Get returns id's record.
func (r *Registry) Get(id node.ID) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.st.nodes[id]
	if !ok {
		return Record{}, false
	}
	return e.n, true
}

// All returns every record, sorted by node.
func (r *Registry) All() []Record {
	r.mu.Lock()
	out := make([]Record, 0, len(r.st.nodes))
	for _, e := range r.st.nodes {
		out = append(out, e.n)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Record) int { return a.ID.Compare(b.ID) })
	return out
}

// Len returns the number of known nodes.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.st.nodes)
}

// Retired returns the fsids of forgotten nodes, ascending.
func (r *Registry) Retired() []uint32 {
	r.mu.Lock()
	out := make([]uint32, 0, len(r.st.retired))
	for id := range r.st.retired {
		out = append(out, id)
	}
	r.mu.Unlock()
	slices.Sort(out)
	return out
}

// Allocate returns id's record, creating it if the node is new. A new node
// gets the lowest fsid >= StartFSID that no node, present or forgotten, has
// and that is not a key of used (the fsids of the server's other exports).
// mac is recorded only for a new node (RecordBoot updates it).
//
// Allocate returns only once the record is on disk, also when it returns an
// existing node, so that no node is given an fsid that a crash could lose.
func (r *Registry) Allocate(id node.ID, mac string, used map[uint32]string) (Record, bool, error) {
	if !id.IsValid() {
		return Record{}, false, errors.New("allocate: no node given")
	}
	mac, err := normMAC(mac)
	if err != nil {
		return Record{}, false, fmt.Errorf("allocate %s: %w", id, err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.writableLocked(); err != nil {
		return Record{}, false, fmt.Errorf("allocate %s: %w", id, err)
	}
	if e, ok := r.st.nodes[id]; ok && e.n.FSID != 0 {
		// Its creator may still be writing it, or its write may have failed.
		if err := r.commitLocked(e.gen); err != nil {
			return Record{}, false, fmt.Errorf("allocate %s: persist: %w", id, err)
		}
		return e.n, false, nil
	} else if ok {
		// Known for its install only: its root's fsid is given now.
		fsid, err := r.freeFSIDLocked(used)
		if err != nil {
			return Record{}, false, fmt.Errorf("allocate %s: %w", id, err)
		}
		e.n.FSID = fsid
		if e.n.MAC == "" {
			e.n.MAC = mac
		}
		r.st.fsids[fsid] = id
		r.gen++
		e.gen = r.gen
		r.logLocked(func(seq uint64) []byte { return putLine(seq, e.n) })
		if err := r.commitLocked(e.gen); err != nil {
			return Record{}, false, fmt.Errorf("allocate %s: persist: %w", id, err)
		}
		return e.n, true, nil
	}
	if r.max > 0 && len(r.st.nodes) >= r.max {
		return Record{}, false, fmt.Errorf("allocate %s: max_nodes %d reached: %w", id, r.max, ErrFull)
	}
	fsid, err := r.freeFSIDLocked(used)
	if err != nil {
		return Record{}, false, fmt.Errorf("allocate %s: %w", id, err)
	}
	r.gen++
	e := &entry{
		n:   Record{ID: id, MAC: mac, FSID: fsid, Created: time.Now().UTC()},
		gen: r.gen,
	}
	r.st.nodes[id] = e
	r.st.fsids[fsid] = id
	r.logLocked(func(seq uint64) []byte { return putLine(seq, e.n) })
	// On failure the record stays in memory, fsid reserved: a retry of
	// Allocate for this node tries the write again and returns it then.
	if err := r.commitLocked(e.gen); err != nil {
		return Record{}, false, fmt.Errorf("allocate %s: persist: %w", id, err)
	}
	return e.n, true, nil
}

// takenLocked reports whether the registry has given out fsid: to a known
// node, or to a forgotten one (retired).
func (r *Registry) takenLocked(fsid uint32) bool {
	if _, ok := r.st.fsids[fsid]; ok {
		return true
	}
	_, ok := r.st.retired[fsid]
	return ok
}

// freeFSIDLocked finds the lowest fsid >= start that the registry has not
// given out and used does not hold. An fsid once given out is never free
// again (forgetting retires it), so the lowest one not given out only
// moves up: r.cursor remembers it, and a search skips only the fsids of
// used (the server's other exports) and the few the registry gave out
// above a hole they made. A scan from start each time cost one map lookup
// per known node, for every new node and every stat of one: quadratic in
// a boot storm (16% of the daemon's CPU at 10,000 nodes).
func (r *Registry) freeFSIDLocked(used map[uint32]string) (uint32, error) {
	if r.cursor < r.start {
		r.cursor = r.start
	}
	for r.cursor != 0 && r.takenLocked(r.cursor) {
		r.cursor++ // wraps to 0 past MaxUint32: nothing is left
	}
	for id := uint64(r.cursor); r.cursor != 0 && id <= math.MaxUint32; id++ {
		fsid := uint32(id)
		if r.takenLocked(fsid) {
			continue
		}
		if _, ok := used[fsid]; ok {
			continue
		}
		return fsid, nil
	}
	return 0, fmt.Errorf("no free fsid >= %d", r.start)
}

// NextFSID is the fsid a new node would get now, given the fsids other
// exports use: a side-effect-free preview (for stat and `pxebootfs render`).
// from overrides the start for registries opened read-only, which do not
// know start_fsid; 0 keeps the registry's own. It returns 0 if none is free.
func (r *Registry) NextFSID(from uint32, used map[uint32]string) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	saved, savedCursor := r.start, r.cursor
	if from != 0 && from != r.start {
		// Another start: the cursor is not about it.
		r.start, r.cursor = from, from
		defer func() { r.start, r.cursor = saved, savedCursor }()
	}
	id, err := r.freeFSIDLocked(used)
	if err != nil {
		return 0
	}
	return id
}

// RecordBoot notes that the node booted at at (its config was served): the last
// boot time, the boot count, and its MAC if mac is not empty. A node's first
// boot returns once it is on disk; a later one once it is in memory, and it
// reaches the disk within bootFlushDelay (or with the next durable change,
// or Close).
func (r *Registry) RecordBoot(id node.ID, at time.Time, mac string) error {
	mac, err := normMAC(mac)
	if err != nil {
		return fmt.Errorf("record boot of %s: %w", id, err)
	}
	return r.update("record boot of", id, func(n *Record) (durable bool) {
		// The first boot is durable: restore brings back exactly the
		// nodes that booted, so a node served just before a crash must be
		// among them. Later boots only count.
		durable = n.BootCount == 0
		n.LastBoot = at.UTC()
		n.BootCount++
		if mac != "" {
			n.MAC = mac
		}
		return durable
	})
}

// bootFlushDelay is how long a boot record may wait in memory. A boot is
// recorded on every open of a node's config: waiting for an fsync each
// time made a warm boot storm disk-bound. A crash loses at most this much
// of boot counts and times, never a node, an fsid or a first boot (those
// are durable before their config is served).
const bootFlushDelay = time.Second

// flushLater makes the changes made so far durable within bootFlushDelay,
// unless a durable change or Close writes them first.
func (r *Registry) flushLaterLocked() {
	if r.flushTimer != nil {
		return
	}
	r.flushTimer = time.AfterFunc(bootFlushDelay, func() {
		if err := r.flush(); err != nil {
			r.log.Warn("write boot records", "err", err)
		}
	})
}

// flush writes every change made so far.
func (r *Registry) flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushTimer = nil
	if r.closed || r.released {
		return nil // Close wrote everything
	}
	return r.commitLocked(r.gen)
}

// RecordError sets node's last error; "" clears it. It returns once the
// change is on disk.
func (r *Registry) RecordError(id node.ID, msg string) error {
	return r.update("record error of", id, func(n *Record) bool { n.LastError = msg; return true })
}

// SetReleased marks node released (or not), durably.
// SetRoot pins id to a root generation (its layer was just made fresh);
// durable before it returns, since a remount over another would fail.
func (r *Registry) SetRoot(id node.ID, root, gen string) error {
	return r.update("pin root", id, func(n *Record) bool { n.Root, n.RootGen = root, gen; return true })
}

func (r *Registry) SetReleased(id node.ID, released bool) error {
	return r.update("mark released", id, func(n *Record) bool { n.Released = released; return true })
}

// update changes node id's record; when change says the change must be
// durable it returns once it is on disk, else once it is in memory (see
// flushLaterLocked).
func (r *Registry) update(what string, id node.ID, change func(*Record) (durable bool)) error {
	_, err := r.change(what, id, false, func(n *Record) (bool, error) { return change(n), nil })
	return err
}

// Change applies change to id's record, creating a record without an fsid
// when id is unknown and create is set (a node entering install mode before
// it ever got a root). It returns the record as changed. change may refuse
// with an error, and then nothing changes; when it says durable the call
// returns once the change is on disk, else within bootFlushDelay.
func (r *Registry) Change(id node.ID, create bool, change func(*Record) (durable bool, err error)) (Record, error) {
	return r.change("change", id, create, change)
}

// change is Change and update; what names the operation in errors.
func (r *Registry) change(what string, id node.ID, create bool, change func(*Record) (durable bool, err error)) (Record, error) {
	if !id.IsValid() {
		return Record{}, fmt.Errorf("%s: no node given", what)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.writableLocked(); err != nil {
		return Record{}, fmt.Errorf("%s %s: %w", what, id, err)
	}
	e, ok := r.st.nodes[id]
	if !ok && !create {
		return Record{}, fmt.Errorf("%s %s: %w", what, id, ErrUnknownNode)
	}
	if !ok && r.max > 0 && len(r.st.nodes) >= r.max {
		return Record{}, fmt.Errorf("%s %s: max_nodes %d reached: %w", what, id, r.max, ErrFull)
	}
	n := Record{ID: id, Created: time.Now().UTC()}
	if ok {
		n = e.n
	}
	durable, err := change(&n)
	if err != nil {
		return Record{}, err
	}
	if n.ID != id || (ok && n.FSID != e.n.FSID) || (!ok && n.FSID != 0) {
		return Record{}, fmt.Errorf("%s %s: the node's name and fsid cannot be changed", what, id)
	}
	r.gen++
	if !ok {
		e = &entry{gen: r.gen}
		r.st.nodes[id] = e
		durable = true // a new record is durable, like Allocate's
	}
	e.n = n
	r.logLocked(func(seq uint64) []byte { return putLine(seq, e.n) })
	if !durable {
		r.flushLaterLocked()
		return n, nil
	}
	if err := r.commitLocked(r.gen); err != nil {
		return Record{}, fmt.Errorf("%s %s: persist: %w", what, id, err)
	}
	return n, nil
}

// Forget removes node. Its fsid is retired, never to be given out again. It
// returns once the change is on disk.
func (r *Registry) Forget(id node.ID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.writableLocked(); err != nil {
		return fmt.Errorf("forget %s: %w", id, err)
	}
	e, ok := r.st.nodes[id]
	if !ok {
		return fmt.Errorf("forget %s: %w", id, ErrUnknownNode)
	}
	delete(r.st.nodes, id)
	r.logLocked(func(seq uint64) []byte { return forgetLine(seq, id, e.n.FSID) })
	if e.n.FSID != 0 {
		delete(r.st.fsids, e.n.FSID)
		r.st.retired[e.n.FSID] = struct{}{}
	}
	r.gen++
	if err := r.commitLocked(r.gen); err != nil {
		return fmt.Errorf("forget %s: persist: %w", id, err)
	}
	return nil
}

func (r *Registry) writableLocked() error {
	if r.readOnly {
		return ErrReadOnly
	}
	if r.closed {
		return ErrClosed
	}
	return nil
}

// commitLocked returns once generation g is on disk: at once if it already
// is; otherwise the caller writes the current state itself, or, if a write
// is in flight (whose snapshot may predate g), waits for it and looks again.
// Waiting callers pile up behind one write and are all served by the next,
// which is the group commit. r.mu must be held; it is released while writing
// or waiting.
func (r *Registry) commitLocked(g uint64) error {
	for r.durable < g {
		if r.writing {
			r.waiting++
			r.cond.Wait()
			r.waiting--
			continue
		}
		if r.released {
			// Close's final write failed and the lock is gone: writing now
			// could clobber a new owner's file.
			return ErrClosed
		}
		if err := r.writeLocked(); err != nil {
			// g was in the snapshot that failed; report that rather than
			// retrying on behalf of a caller who may prefer to give up.
			return err
		}
	}
	return nil
}

// logLocked queues the journal line of a change just made in memory,
// under the change's sequence number.
func (r *Registry) logLocked(line func(seq uint64) []byte) {
	r.st.seq++
	r.pending = append(r.pending, line(r.st.seq)...)
}

// snapshotLocked copies the state for a snapshot.
func (r *Registry) snapshotLocked() ([]Record, []uint32) {
	nodes := make([]Record, 0, len(r.st.nodes))
	for _, e := range r.st.nodes {
		nodes = append(nodes, e.n)
	}
	retired := make([]uint32, 0, len(r.st.retired))
	for id := range r.st.retired {
		retired = append(retired, id)
	}
	return nodes, retired
}

// openJournal opens the journal for appending.
func (r *Registry) openJournal() error {
	f, err := os.OpenFile(filepath.Join(r.dir, journalName), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open journal: %w", err)
	}
	if r.jf != nil {
		r.jf.Close()
	}
	// Always called right after compact: the journal holds its base line.
	r.jf, r.jsize, r.jempty = f, fi.Size(), fi.Size()
	return nil
}

// minCompact is the journal size below which it is never compacted; above
// it, the journal is compacted once it is four times the snapshot, so a
// change costs its own line plus, amortized, a quarter of a line of
// snapshot, however many nodes there are.
const minCompact = 1 << 20

// writeLocked makes every change made so far durable: it appends the
// pending journal lines and fsyncs, or, when the journal has grown large,
// writes a new snapshot and starts an empty journal. r.mu must be held and
// no write in flight; mu is released during the I/O.
func (r *Registry) writeLocked() error {
	r.writing = true
	r.writes++
	gen := r.gen
	data := r.pending
	r.pending = nil
	compactNow := r.jf == nil || r.jsize+int64(len(data)) > max(r.minCompact, 4*r.snapBytes)
	var nodes []Record
	var retired []uint32
	seq := r.st.seq
	if compactNow {
		nodes, retired = r.snapshotLocked()
	}
	hook := r.beforeWrite
	size := r.jsize
	r.mu.Unlock()

	var snapBytes int64
	err := func() error {
		if hook != nil {
			if err := hook(); err != nil {
				return err
			}
		}
		if compactNow {
			var err error
			snapBytes, err = compact(r.dir, nodes, retired, seq)
			return err
		}
		if _, err := r.jf.Write(data); err != nil {
			// Cut a partial line off, so the next append starts a line.
			r.jf.Truncate(size)
			return fmt.Errorf("append to journal: %w", err)
		}
		if err := r.jf.Sync(); err != nil {
			return fmt.Errorf("fsync journal: %w", err)
		}
		return nil
	}()

	r.mu.Lock()
	r.writing = false
	switch {
	case err == nil && compactNow:
		r.snapBytes = snapBytes
		if oerr := r.openJournal(); oerr != nil {
			// The old journal was replaced: never append to it again.
			r.jf.Close()
			r.jf = nil
			err = oerr
		}
	case err == nil:
		r.jsize += int64(len(data))
	}
	if err == nil {
		r.durable = gen
	} else {
		// Not written: the lines go out with the next write (their order
		// is kept, and replay skips what a snapshot already holds).
		r.pending = append(data, r.pending...)
	}
	r.cond.Broadcast()
	return err
}
