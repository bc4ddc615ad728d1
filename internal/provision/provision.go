// Package provision prepares each node's root the first time it boots: a
// record and an fsid in the registry, an overlay of the golden root, and an
// NFS export of that overlay to the node's IP alone. It runs once per node
// (concurrent opens share one run; a failure is retried by the next open),
// undoes half-made work, and restores every known node at start-up.
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/nfsexport"
	"github.com/pxebootfs/pxebootfs/overlay"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

// Options wires a Provisioner.
type Options struct {
	Overlay  *overlay.Manager
	Exporter nfsexport.Exporter
	Registry *registry.Registry
	// NodeDir is node_dir: a node's root is NodeDir/NODE.
	NodeDir string
	// StartFSID is start_fsid, for previews from a read-only registry.
	StartFSID uint32
	Logger    *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// ResetGuard and ResetOnBoot are reset_guard and reset_on_boot; see
	// SetResetPolicy.
	ResetGuard  time.Duration
	ResetOnBoot bool
	// Metrics, if not nil, is told about every provisioning and reset.
	Metrics Metrics
}

// Provisioner implements catalog.Provisioner.
type Provisioner struct {
	ov      *overlay.Manager
	ex      nfsexport.Exporter
	reg     *registry.Registry
	nodeDir string
	start   uint32
	log     *slog.Logger
	now     func() time.Time

	met   Metrics // nil: none
	group singleflight.Group
	// nodeLocks holds a *sync.Mutex per node: provisioning, reset, release
	// and restore of one node never overlap.
	nodeLocks sync.Map
	mu        sync.Mutex
	ready     map[string]bool // mounted and exported by us since start
	// Under mu: the reset policy, and when each node was last reset (a
	// node reset just now is not due for reset_on_boot again).
	resetGuard  time.Duration
	resetOnBoot bool
	lastReset   map[string]time.Time

	usedMu   sync.Mutex
	used     map[uint32]string
	usedTime time.Time
}

// usedTTL is how long the server's list of fsids in use is reused. In a
// boot storm every new node needs it and each read runs exportfs -v; fsids
// of our own nodes are never at risk (the registry allocates them under
// its lock), only a foreign export added in the last moments is.
const usedTTL = 2 * time.Second

var _ catalog.Provisioner = (*Provisioner)(nil)

// New returns a Provisioner. For a read-only view (Peek, Nodes) only
// Registry and NodeDir are needed.
func New(o Options) *Provisioner {
	p := &Provisioner{ov: o.Overlay, ex: o.Exporter, reg: o.Registry, nodeDir: o.NodeDir, start: o.StartFSID, log: o.Logger, now: o.Now, ready: map[string]bool{},
		met: o.Metrics, resetGuard: o.ResetGuard, resetOnBoot: o.ResetOnBoot, lastReset: map[string]time.Time{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

func (p *Provisioner) isReady(node string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready[node]
}

func (p *Provisioner) setReady(node string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok {
		p.ready[node] = true
	} else {
		delete(p.ready, node)
	}
}

// Forget drops the in-memory "ready" mark, so the next open checks and
// provisions the node again (after an admin reset or release).
func (p *Provisioner) Forget(node string) { p.setReady(node, false) }

// Ensure makes n's root mounted and exported and records the boot. It
// blocks until done; concurrent calls for one node share one provisioning,
// and different nodes run in parallel. The work itself is not cancelled by
// the caller's context (a tftpd child that gives up must not leave a
// half-made root for the next one): only the wait is. With reset_on_boot,
// a known node booting again after reset_guard is first reset.
func (p *Provisioner) Ensure(ctx context.Context, n catalog.Node) (catalog.Root, error) {
	if !p.isReady(n.Name) || p.bootResetDue(n.Name) {
		ch := p.group.DoChan(n.Name, func() (any, error) {
			defer p.lockNode(n.Name)()
			wctx := context.WithoutCancel(ctx)
			// Checked again under the lock: of the several opens of
			// one boot, only the first resets.
			if p.bootResetDue(n.Name) {
				if rec, ok := p.reg.Get(n.Name); ok {
					if err := p.resetLocked(wctx, rec, "reset_on_boot"); err != nil {
						return nil, err
					}
				}
			}
			if p.isReady(n.Name) {
				return nil, nil
			}
			err := p.provision(wctx, n)
			p.setReady(n.Name, err == nil)
			return nil, err
		})
		select {
		case <-ctx.Done():
			return catalog.Root{}, ctx.Err()
		case r := <-ch:
			if r.Err != nil {
				return catalog.Root{}, r.Err
			}
		}
	}
	rec, ok := p.reg.Get(n.Name)
	if !ok {
		// Released by an admin between provisioning and here.
		p.setReady(n.Name, false)
		return catalog.Root{}, fmt.Errorf("provision %s: node was released meanwhile", n.Name)
	}
	if err := p.reg.RecordBoot(n.Name, p.now(), n.MAC); err != nil {
		p.log.Warn("record boot", "node", n.Name, "err", err)
	}
	return p.root(rec), nil
}

func (p *Provisioner) root(rec registry.Node) catalog.Root {
	return catalog.Root{FSID: rec.FSID, Dir: p.dir(rec.Node)}
}

// dir is the node's mount point and export path. Node names reaching here
// were parsed as 8 hex digits, so the join cannot leave NodeDir.
func (p *Provisioner) dir(node string) string { return filepath.Join(p.nodeDir, node) }

// provision does the work for one node, once. On failure it undoes what it
// did, so nothing half-made stays: a mount without its export is unmounted.
func (p *Provisioner) provision(ctx context.Context, n catalog.Node) (err error) {
	start := p.now()
	log := p.log.With("node", n.Name, "ip", n.Addr.String())
	defer func() {
		if p.met != nil {
			p.met.Provisioned(p.now().Sub(start), err)
		}
		if err != nil {
			log.Error("provision failed", "err", err, "duration", p.now().Sub(start))
			if _, known := p.reg.Get(n.Name); known {
				if rerr := p.reg.RecordError(n.Name, err.Error()); rerr != nil {
					log.Warn("record error", "err", rerr)
				}
			}
		}
	}()

	rec, known := p.reg.Get(n.Name)
	if !known {
		used, err := p.usedFSIDs(ctx)
		if err != nil {
			return fmt.Errorf("provision %s: list fsids in use: %w", n.Name, err)
		}
		var created bool
		rec, created, err = p.reg.Allocate(n.Name, n.Addr.String(), n.MAC, used)
		if err != nil {
			return fmt.Errorf("provision %s: %w", n.Name, err)
		}
		if created {
			log.Info("provision: new node", "fsid", rec.FSID)
		}
	}
	t := p.now()
	adopted, err := p.ov.Mount(n.Name)
	if err != nil {
		return fmt.Errorf("provision %s: %w", n.Name, err)
	}
	log.Info("provision: overlay mounted", "adopted", adopted, "duration", p.now().Sub(t))

	t = p.now()
	if err := p.ex.Export(ctx, p.export(rec)); err != nil {
		if !adopted {
			if uerr := p.ov.Unmount(n.Name); uerr != nil {
				err = errors.Join(err, fmt.Errorf("roll back mount: %w", uerr))
			}
		}
		return fmt.Errorf("provision %s: %w", n.Name, err)
	}
	log.Info("provision: exported", "fsid", rec.FSID, "exporter", p.ex.Name(), "duration", p.now().Sub(t))
	if rec.LastError != "" {
		if err := p.reg.RecordError(n.Name, ""); err != nil {
			log.Warn("clear error", "err", err)
		}
	}
	if rec.Released {
		if err := p.reg.SetReleased(n.Name, false); err != nil {
			log.Warn("clear released mark", "err", err)
		}
	}
	log.Info("provision: ready", "fsid", rec.FSID, "duration", p.now().Sub(start))
	return nil
}

func (p *Provisioner) usedFSIDs(ctx context.Context) (map[uint32]string, error) {
	p.usedMu.Lock()
	defer p.usedMu.Unlock()
	if p.used != nil && p.now().Sub(p.usedTime) < usedTTL {
		return p.used, nil
	}
	used, err := p.ex.UsedFSIDs(ctx)
	if err != nil {
		return nil, err
	}
	p.used, p.usedTime = used, p.now()
	return used, nil
}

func (p *Provisioner) export(rec registry.Node) nfsexport.Export {
	addr, _ := netip.ParseAddr(rec.IP)
	return nfsexport.Export{Path: p.dir(rec.Node), Client: addr, FSID: rec.FSID}
}

// Peek tells the template about n without side effects. A node never seen
// gets the fsid it would be given now (from the registry and the last list
// of the server's fsids in use), so stat and `pxebootfs render` show what
// the first open will most likely serve; the size a tftpd announces is
// always that of the content it reads, rendered after provisioning.
func (p *Provisioner) Peek(n catalog.Node) catalog.Root {
	if p.reg == nil { // no state yet: nothing was ever provisioned
		return catalog.Root{FSID: p.start, Dir: p.dir(n.Name)}
	}
	if rec, ok := p.reg.Get(n.Name); ok {
		return p.root(rec)
	}
	// The server's fsids in use as last read, if ever: no exportfs run here.
	p.usedMu.Lock()
	used := p.used
	p.usedMu.Unlock()
	return catalog.Root{FSID: p.reg.NextFSID(p.start, used), Dir: p.dir(n.Name)}
}

// Nodes lists the nodes in the registry.
func (p *Provisioner) Nodes() []catalog.Node {
	if p.reg == nil {
		return nil
	}
	recs := p.reg.All()
	nodes := make([]catalog.Node, 0, len(recs))
	for _, r := range recs {
		addr, err := netip.ParseAddr(r.IP)
		if err != nil {
			continue
		}
		nodes = append(nodes, catalog.Node{Name: r.Node, Addr: addr, MAC: r.MAC})
	}
	return nodes
}

// restoreWorkers bounds parallel restores: mounts and exportfs calls are
// cheap but not free, and a server coming back up has other work too.
const restoreWorkers = 8

// Restore re-mounts missing overlays and re-adds missing exports of every
// node in the registry, with their recorded fsids, so nodes that were
// running when the server went down resume. Failures are logged and
// recorded per node (the next open retries); it returns how many nodes are
// ready and the errors joined.
func (p *Provisioner) Restore(ctx context.Context) (int, error) {
	var recs []registry.Node
	for _, rec := range p.reg.All() {
		// A released node stays down until it boots again, and a node that
		// never got its config (its first provisioning failed, or the
		// daemon died during it) is provisioned by its first open instead.
		if !rec.Released && rec.BootCount > 0 {
			recs = append(recs, rec)
		}
	}
	mounted, err := p.ov.MountedNodes()
	if err != nil {
		return 0, fmt.Errorf("restore: read mount table: %w", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		ready int
	)
	sem := make(chan struct{}, restoreWorkers)
	for _, rec := range recs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := p.restoreOne(ctx, rec, mounted[rec.Node])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ready++
		}()
	}
	wg.Wait()
	return ready, errors.Join(errs...)
}

func (p *Provisioner) restoreOne(ctx context.Context, rec registry.Node, mounted bool) error {
	log := p.log.With("node", rec.Node, "fsid", rec.FSID)
	_, err, _ := p.group.Do(rec.Node, func() (any, error) {
		defer p.lockNode(rec.Node)()
		if !mounted {
			if _, err := p.ov.Mount(rec.Node); err != nil {
				return nil, err
			}
			log.Info("restore: overlay mounted")
		}
		e := p.export(rec)
		ok, err := p.ex.Exported(ctx, e)
		if err != nil {
			return nil, err
		}
		if !ok {
			if err := p.ex.Export(ctx, e); err != nil {
				return nil, err
			}
			log.Info("restore: exported")
		}
		p.setReady(rec.Node, true)
		return nil, nil
	})
	if err != nil {
		err = fmt.Errorf("restore %s: %w", rec.Node, err)
		log.Error("restore failed; the next boot of the node retries", "err", err)
		if rerr := p.reg.RecordError(rec.Node, err.Error()); rerr != nil {
			log.Warn("record error", "err", rerr)
		}
	}
	return err
}
