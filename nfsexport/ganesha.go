package nfsexport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/moby/sys/mountinfo"
)

// DefaultGaneshaConfig is the managed include file when
// GaneshaOptions.ConfigFile is empty.
const DefaultGaneshaConfig = "/etc/ganesha/pxebootfs.conf"

// MaxGaneshaFSID is the largest fsid the Ganesha backend can export: the
// fsid is the export's Export_Id, which Ganesha keeps in 16 bits.
const MaxGaneshaFSID = math.MaxUint16

// GaneshaOptions configures a Ganesha.
type GaneshaOptions struct {
	// ConfigFile is the include file pxebootfs owns, with one EXPORT block
	// per node (ganesha_config). Ganesha's main configuration must
	// %include it, so that Ganesha exports every node again when it
	// starts. Default DefaultGaneshaConfig.
	ConfigFile string
	// Bus is the D-Bus address Ganesha's export manager is reached at
	// (ganesha_dbus), e.g. "unix:path=/run/dbus/system_bus_socket";
	// empty means the system bus (DBUS_SYSTEM_BUS_ADDRESS, else its
	// standard socket).
	Bus string
	// Logger receives a line per export and unexport. Default: discard.
	Logger *slog.Logger
}

// Ganesha exports through NFS-Ganesha: each export is an EXPORT block in a
// managed include file, which is the source of truth Ganesha reads at start,
// and is added, updated or removed in the running server over D-Bus
// (org.ganesha.nfsd.exportmgr AddExport, UpdateExport, RemoveExport), so
// Ganesha is never restarted. An export's fsid is its Export_Id, at most
// MaxGaneshaFSID.
type Ganesha struct {
	file string
	bus  string
	log  *slog.Logger

	// fileMu serializes reads and rewrites of file; fileBatch coalesces
	// rewrites (see editFile).
	fileMu    sync.Mutex
	fileBatch batcher[blockEdit]
	// parsed is the managed file's content as last read or written, and
	// its blocks; under fileMu (see readFile).
	parsed struct {
		data   []byte
		blocks []ganeshaBlock
	}
	// showBatch shares ShowExports calls; see sharedShow. addBatch shares
	// AddExport calls for new exports; see addNew.
	showBatch batcher[*showCall]
	addBatch  batcher[Export]
	// seen holds the Export_Ids Ganesha was seen to export (by any
	// ShowExports, or because pxebootfs added them) and has not seen
	// removed since: a hint for apply, never trusted alone.
	seenMu sync.Mutex
	seen   map[uint16]bool

	connMu     sync.Mutex
	conn       *dbus.Conn
	connCancel context.CancelFunc

	// stale holds the Export_Ids Init found exported while nothing was
	// mounted at their path; see Init.
	staleMu sync.Mutex
	stale   map[uint16]bool

	// pending are exports Exported accepted from the managed file while
	// Ganesha was not running; a watcher applies them once it answers.
	pendingMu   sync.Mutex
	pending     []Export
	watching    bool
	watchCtx    context.Context
	watchCancel context.CancelFunc
	watchDone   chan struct{}
}

// pendingPoll is how often the watcher asks whether Ganesha answers again.
const pendingPoll = time.Second

// checkLater queues e for the watcher, starting it if needed.
func (g *Ganesha) checkLater(e Export) {
	g.pendingMu.Lock()
	defer g.pendingMu.Unlock()
	if !slices.Contains(g.pending, e) {
		g.pending = append(g.pending, e)
	}
	g.log.Info("ganesha is not running; the node's export is in its config file and is checked once ganesha answers",
		"path", e.Path, "client", e.Client, "fsid", e.FSID)
	if g.watching {
		return
	}
	g.watching = true
	g.watchDone = make(chan struct{})
	go g.watch(g.watchCtx, g.watchDone)
}

// watch waits until Ganesha answers, then applies every pending export
// (Export is idempotent: usually Ganesha already serves it from the file).
func (g *Ganesha) watch(ctx context.Context, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(pendingPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := g.show(ctx); err != nil {
			continue
		}
		g.pendingMu.Lock()
		todo := g.pending
		g.pending, g.watching = nil, false
		g.pendingMu.Unlock()
		failed := 0
		for _, e := range todo {
			if err := g.Export(ctx, e); err != nil {
				failed++
				g.log.Error("ganesha answers again, but a node export could not be applied; the node's next boot retries", "export", e.String(), "err", err)
			}
		}
		g.log.Info("ganesha answers again; node exports checked", "exports", len(todo), "failed", failed)
		return
	}
}

var (
	_ Exporter  = (*Ganesha)(nil)
	_ Initer    = (*Ganesha)(nil)
	_ io.Closer = (*Ganesha)(nil)
)

// NewGanesha checks o and fills in its defaults. It neither connects nor
// writes anything.
func NewGanesha(o GaneshaOptions) (*Ganesha, error) {
	g := &Ganesha{file: o.ConfigFile, bus: o.Bus, log: o.Logger, stale: map[uint16]bool{}, seen: map[uint16]bool{}}
	g.watchCtx, g.watchCancel = context.WithCancel(context.Background())
	if g.file == "" {
		g.file = DefaultGaneshaConfig
	}
	// The file is named inside Ganesha's configuration language (and over
	// D-Bus): the same characters as an export path are safe there.
	if err := ValidatePath(g.file); err != nil {
		return nil, fmt.Errorf("nfsexport: ganesha config file: %w", err)
	}
	if strings.ContainsAny(g.bus, " \t\r\n") {
		return nil, fmt.Errorf("nfsexport: D-Bus address %q contains whitespace", g.bus)
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	return g, nil
}

// Name returns "ganesha".
func (g *Ganesha) Name() string { return "ganesha" }

// ConfigFile returns the managed include file.
func (g *Ganesha) ConfigFile() string { return g.file }

// Init readies the backend when the daemon starts, before it restores its
// nodes' roots. It creates the managed file, without exports, if it does not
// exist: Ganesha refuses to start when a file it %includes is missing.
//
// It also finds the exports Ganesha made while nothing was mounted at their
// path: after a reboot, Ganesha may start and read the managed file before
// pxebootfs has mounted the nodes' overlays again, and it then exports the
// empty directories under them, and keeps doing so once the overlays are
// mounted. Exported reports such an export false and Export removes and
// adds it again, so that it serves the overlay. Exports whose overlay is
// still mounted (pxebootfs alone restarted) are left alone: running nodes
// are not disturbed. Without Ganesha running, there is nothing to find;
// exports it makes when it starts later read the file after the mounts.
//
// Files of one-block calls a crash interrupted (see oneBlockCall) are
// removed.
func (g *Ganesha) Init(ctx context.Context) error {
	if err := g.initFile(); err != nil {
		return err
	}
	g.removeOneBlockFiles()
	blocks, err := g.fileBlocks()
	if err != nil {
		return err
	}
	live, err := g.show(ctx)
	if err != nil {
		g.log.Warn("ganesha is not reachable; node exports are applied as nodes are restored or boot", "err", err)
		return nil
	}
	g.staleMu.Lock()
	defer g.staleMu.Unlock()
	for _, b := range blocks {
		if live[b.ID] != b.Path {
			continue
		}
		if mounted, err := mountinfo.Mounted(b.Path); err == nil && !mounted {
			g.stale[b.ID] = true
			g.log.Info("ganesha exports a node root that is not mounted; re-exporting it once mounted", "path", b.Path, "export_id", b.ID)
		}
	}
	return nil
}

func (g *Ganesha) isStale(id uint16) bool {
	g.staleMu.Lock()
	defer g.staleMu.Unlock()
	return g.stale[id]
}

func (g *Ganesha) clearStale(id uint16) {
	g.staleMu.Lock()
	defer g.staleMu.Unlock()
	delete(g.stale, id)
}

// initFile creates the managed file if it does not exist, and otherwise
// checks that it is one pxebootfs can update.
func (g *Ganesha) initFile() error {
	g.fileMu.Lock()
	defer g.fileMu.Unlock()
	if _, err := os.Stat(g.file); err == nil {
		_, _, err := g.readFile()
		return err
	}
	if err := writeFileAtomic(g.file, renderGaneshaFile(g.file, nil), 0o644); err != nil {
		return fmt.Errorf("create %s: %w", g.file, err)
	}
	return nil
}

// Check reports whether Ganesha's export manager answers on the bus, and
// whether the managed file, if it exists, is one pxebootfs can update.
func (g *Ganesha) Check(ctx context.Context) error {
	if _, err := g.show(ctx); err != nil {
		return fmt.Errorf("ganesha is not reachable: %w", err)
	}
	if _, err := g.fileBlocks(); err != nil {
		return err
	}
	return nil
}

func validateGaneshaExport(e Export) error {
	if err := e.Validate(); err != nil {
		return err
	}
	switch {
	case e.FSID == 0:
		return fmt.Errorf("%w: fsid 0 is Ganesha's NFSv4 pseudo-root, not a node's root", ErrInvalidExport)
	case e.FSID > MaxGaneshaFSID:
		return fmt.Errorf("%w: fsid %d is larger than %d, the largest Ganesha Export_Id", ErrInvalidExport, e.FSID, MaxGaneshaFSID)
	}
	return nil
}

// Export records e as an EXPORT block (Export_Id = e.FSID) in the managed
// file, then makes the running Ganesha export it: AddExport if it has no
// export with that id, UpdateExport if it has one for the same path with
// another client, nothing if it already matches, and remove and add it
// again if Init found it made before its path was mounted. A block or live
// export of the same path under another Export_Id (the node's old fsid) is
// replaced.
//
// An Export_Id used by another path, in the managed file or in Ganesha, is
// an error: fsids are allocated once and never shared. After any other
// failure Export removes what it did (best effort, even if ctx is done), as
// Exportfs does.
func (g *Ganesha) Export(ctx context.Context, e Export) error {
	if err := validateGaneshaExport(e); err != nil {
		return fmt.Errorf("export %s: %w", e, err)
	}
	fi, err := os.Lstat(e.Path)
	if err != nil {
		return fmt.Errorf("export %s: %w", e, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("export %s: %s (file type %v): %w", e, e.Path, fi.Mode().Type(), syscall.ENOTDIR)
	}
	id := uint16(e.FSID)
	var replaced []uint16
	err = g.editFile(func(blocks []ganeshaBlock) ([]ganeshaBlock, error) {
		replaced = nil
		var keep []ganeshaBlock
		for _, b := range blocks {
			switch {
			case b.ID == id && b.Path != e.Path:
				return nil, fmt.Errorf("Export_Id %d is already used by %s in %s", id, b.Path, g.file)
			case b.Path == e.Path && b.ID != id:
				replaced = append(replaced, b.ID)
				continue
			case b.ID == id:
				continue
			}
			keep = append(keep, b)
		}
		return append(keep, blockOf(e)), nil
	})
	if err != nil {
		return fmt.Errorf("export %s: record in %s: %w", e, g.file, err)
	}
	for _, old := range replaced {
		if _, err := g.removeExport(ctx, old); err != nil {
			g.undo(ctx, e)
			return fmt.Errorf("export %s: remove its old Export_Id %d: %w", e, old, err)
		}
	}
	action, err := g.apply(ctx, e)
	if err != nil {
		if !errors.Is(err, errIDConflict) {
			g.undo(ctx, e)
		} else {
			g.forget(e)
		}
		return fmt.Errorf("export %s: %w", e, err)
	}
	g.log.Info("exported", "path", e.Path, "client", e.Client, "fsid", e.FSID, "ganesha", action)
	return nil
}

// errIDConflict marks an Export_Id that Ganesha uses for another path.
var errIDConflict = errors.New("Export_Id in use")

// apply brings the running Ganesha in line with e's block and says what it
// did.
func (g *Ganesha) apply(ctx context.Context, e Export) (string, error) {
	id := uint16(e.FSID)
	for attempt := 0; ; attempt++ {
		var live liveExport
		var found bool
		// An id Ganesha was never seen to export (a new node's) is added
		// without asking first, together with the other new nodes of the
		// moment (addNew): lookup's ShowExports lists every export, which
		// made each new node cost O(exports). If Ganesha has it after
		// all, AddExport says so and the next attempt asks.
		ask := attempt > 0 || g.seenLive(id)
		if ask {
			var err error
			if live, found, err = g.lookup(ctx, id); err != nil {
				return "", err
			}
		}
		if found {
			if live.Path != e.Path {
				return "", fmt.Errorf("%w: Ganesha exports %s as Export_Id %d", errIDConflict, live.Path, id)
			}
			if g.isStale(id) {
				// Made before the overlay was mounted: only a new
				// export sees it (UpdateExport keeps the old root).
				if _, err := g.removeExport(ctx, id); err != nil {
					return "", err
				}
				if err := g.addExport(ctx, e); err != nil {
					return "", err
				}
				g.clearStale(id)
				return "re-added", nil
			}
			if c, ok := live.onlyClient(); ok && c == e.Client {
				return "unchanged", nil
			}
			if err := g.updateExport(ctx, e); err != nil {
				return "", err
			}
			return "updated", nil
		}
		var err error
		if ask {
			err = g.addExport(ctx, e)
		} else {
			err = g.addNew(ctx, e)
		}
		if err == nil {
			return "added", nil
		}
		if isUnreachable(err) {
			return "", err
		}
		if isAlreadyActive(err) && attempt == 0 {
			continue // added meanwhile: look again
		}
		if attempt == 0 && g.dropOldIDs(ctx, e) {
			continue
		}
		return "", fmt.Errorf("%w (Ganesha's log has the details)", err)
	}
}

// dropOldIDs removes live exports of e.Path to e.Client under another
// Export_Id, which make AddExport fail (Pseudo paths must be unique). They
// are this node's own, left from an fsid it no longer has; an export of the
// path to anyone else is left alone. It reports whether it removed any.
func (g *Ganesha) dropOldIDs(ctx context.Context, e Export) bool {
	ids, err := g.liveIDs(ctx, e)
	if err != nil {
		g.log.Warn("cannot list Ganesha's exports", "export", e.String(), "err", err)
		return false
	}
	dropped := false
	for _, id := range ids {
		if id == uint16(e.FSID) {
			continue
		}
		if removed, err := g.removeExport(ctx, id); err != nil {
			g.log.Warn("cannot remove old export", "export", e.String(), "export_id", id, "err", err)
		} else if removed {
			g.log.Info("removed old export", "path", e.Path, "client", e.Client, "export_id", id)
			dropped = true
		}
	}
	return dropped
}

// liveIDs returns the Export_Ids of Ganesha's exports of e.Path to e.Client
// alone.
func (g *Ganesha) liveIDs(ctx context.Context, e Export) ([]uint16, error) {
	all, err := g.show(ctx)
	if err != nil {
		return nil, err
	}
	var ids []uint16
	for id, path := range all {
		if path != e.Path || id == 0 {
			continue
		}
		live, found, err := g.display(ctx, id)
		if err != nil {
			return nil, err
		}
		if c, ok := live.onlyClient(); found && ok && c == e.Client {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// undo removes what a failed Export may have left, logging what it cannot:
// the live export, if Ganesha has e's id for e's path, and the block.
func (g *Ganesha) undo(ctx context.Context, e Export) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	id := uint16(e.FSID)
	if live, found, err := g.lookup(ctx, id); err != nil {
		g.log.Warn("cannot check failed export", "export", e.String(), "err", err)
	} else if found && live.Path == e.Path {
		if _, err := g.removeExport(ctx, id); err != nil {
			g.log.Warn("cannot remove failed export", "export", e.String(), "err", err)
		}
	}
	g.forget(e)
}

// forget removes e's block (its id and path) from the managed file.
func (g *Ganesha) forget(e Export) {
	err := g.editFile(func(blocks []ganeshaBlock) ([]ganeshaBlock, error) {
		return slices.DeleteFunc(blocks, func(b ganeshaBlock) bool {
			return b.ID == uint16(e.FSID) && b.Path == e.Path
		}), nil
	})
	if err != nil {
		g.log.Warn("cannot remove failed export from the managed file", "export", e.String(), "file", g.file, "err", err)
	}
}

// Unexport removes every export of e.Path to e.Client, whatever its
// Export_Id: from the running Ganesha (RemoveExport), then from the managed
// file. e.FSID is ignored. An export that does not exist is success; the
// path need not exist any more.
func (g *Ganesha) Unexport(ctx context.Context, e Export) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("unexport %s: %w", e, err)
	}
	// Only exports Ganesha itself shows for this path and client are
	// removed: an Export_Id from the file alone might, after a hand edit,
	// be some other path's.
	ids, err := g.liveIDs(ctx, e)
	if err != nil {
		return fmt.Errorf("unexport %s: %w", e, err)
	}
	removed := false
	for _, id := range ids {
		ok, err := g.removeExport(ctx, id)
		if err != nil {
			return fmt.Errorf("unexport %s: %w", e, err)
		}
		g.clearStale(id)
		removed = removed || ok
	}
	err = g.editFile(func(blocks []ganeshaBlock) ([]ganeshaBlock, error) {
		return slices.DeleteFunc(blocks, func(b ganeshaBlock) bool {
			return b.Path == e.Path && b.Client == e.Client
		}), nil
	})
	if err != nil {
		return fmt.Errorf("unexport %s: remove from %s: %w", e, g.file, err)
	}
	if removed {
		g.log.Info("unexported", "path", e.Path, "client", e.Client)
	}
	return nil
}

// Exported reports whether Ganesha exports e.Path to e.Client alone as
// Export_Id e.FSID, and the managed file has that block, so that the export
// also survives a restart of Ganesha. Restoring a node whose block was lost
// thus writes it again.
func (g *Ganesha) Exported(ctx context.Context, e Export) (bool, error) {
	if err := e.Validate(); err != nil {
		return false, fmt.Errorf("check export %s: %w", e, err)
	}
	if e.FSID == 0 || e.FSID > MaxGaneshaFSID {
		return false, nil
	}
	id := uint16(e.FSID)
	live, found, err := g.lookup(ctx, id)
	if isUnreachable(err) {
		// Ganesha is not running (yet): after a reboot pxebootfs may start
		// first. An export whose block is in the managed file is what
		// Ganesha will serve when it starts, so the node counts as
		// exported now, and the export is checked once Ganesha answers.
		blocks, ferr := g.fileBlocks()
		if ferr == nil && slices.Contains(blocks, blockOf(e)) {
			g.checkLater(e)
			return true, nil
		}
	}
	if err != nil {
		return false, fmt.Errorf("check export %s: %w", e, err)
	}
	if c, ok := live.onlyClient(); !found || !ok || live.Path != e.Path || c != e.Client || g.isStale(id) {
		return false, nil
	}
	blocks, err := g.fileBlocks()
	if err != nil {
		return false, fmt.Errorf("check export %s: %w", e, err)
	}
	return slices.Contains(blocks, blockOf(e)), nil
}

// List returns Ganesha's exports that an Export can describe (exactly one
// IPv4 client, not stale), whoever made them, with their Export_Id as fsid, sorted by
// path and client.
func (g *Ganesha) List(ctx context.Context) ([]Export, error) {
	all, err := g.show(ctx)
	if err != nil {
		return nil, fmt.Errorf("list exports: %w", err)
	}
	var out []Export
	for id := range all {
		if id == 0 {
			continue
		}
		live, found, err := g.display(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("list exports: %w", err)
		}
		// An export Ganesha made before its overlay was mounted (see
		// Init) serves the wrong directory: it is not listed as exported,
		// so that a restore re-adds it.
		if c, ok := live.onlyClient(); found && ok && !g.isStale(id) {
			out = append(out, Export{Path: live.Path, Client: c, FSID: uint32(id)})
		}
	}
	slices.SortFunc(out, func(a, b Export) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return a.Client.Compare(b.Client)
	})
	return out, nil
}

// UsedFSIDs maps the Export_Id of every export Ganesha has (0 being its
// NFSv4 pseudo-root) and of every block in the managed file to its path:
// Ganesha's own list first.
func (g *Ganesha) UsedFSIDs(ctx context.Context) (map[uint32]string, error) {
	all, err := g.show(ctx)
	if err != nil {
		return nil, fmt.Errorf("used fsids: %w", err)
	}
	used := make(map[uint32]string, len(all))
	for id, path := range all {
		used[uint32(id)] = path
	}
	blocks, err := g.fileBlocks()
	if err != nil {
		return nil, fmt.Errorf("used fsids: %w", err)
	}
	for _, b := range blocks {
		if _, seen := used[uint32(b.ID)]; !seen {
			used[uint32(b.ID)] = b.Path
		}
	}
	return used, nil
}

// IncludeLine is the line Ganesha's main configuration needs so that it
// reads the managed file at start.
func (g *Ganesha) IncludeLine() string { return `%include "` + g.file + `"` }
