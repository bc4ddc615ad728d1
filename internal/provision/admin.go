package provision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

// Admin operations: what `pxebootfs reset`, `release` and `nodes` do in
// the daemon. Each takes the node's lock, so it waits for a provisioning of
// the same node in flight and the next open waits for it. A node's overlay
// data is deleted only here, and only when asked: by Reset, by a Release
// with purge, or by reset_on_boot.

var (
	// ErrUnknownNode is registry.ErrUnknownNode: the node is not in the
	// registry (never booted, or purged).
	ErrUnknownNode = registry.ErrUnknownNode
	// ErrRecentBoot is wrapped by Reset's error for a node that booted less
	// than reset_guard ago: it is probably running on the root that would
	// be wiped under it.
	ErrRecentBoot = errors.New("node booted recently")
)

// Metrics receives what provisioning measures. Implementations are safe for
// concurrent use.
type Metrics interface {
	// Provisioned is called once per provisioning run (not per open).
	Provisioned(d time.Duration, err error)
	// Reset is called once per reset; reason is "admin" or "reset_on_boot".
	Reset(reason string, d time.Duration, err error)
}

// NodeStatus is a node's record and the state of its root right now.
type NodeStatus struct {
	registry.Record
	// Mounted and Exported are nil when unknown: no overlay manager or
	// exporter (a read-only view), export = none, or a failed check.
	Mounted  *bool
	Exported *bool
	// Owner is the server holding the root in cluster mode ("" otherwise).
	// A node another server owns is listed with what its owner published
	// (fsid, generation) and nothing of this server's.
	Owner string
}

// SetResetPolicy sets reset_guard and reset_on_boot; a reload calls it.
func (p *Provisioner) SetResetPolicy(guard time.Duration, onBoot bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resetGuard, p.resetOnBoot = guard, onBoot
}

func (p *Provisioner) policy() (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resetGuard, p.resetOnBoot
}

// lastActive is the later of the node's last recorded boot and its last
// reset; zero if neither happened. The caller holds the node's lock.
func lastActive(st *nodeState, rec registry.Record) time.Time {
	if rec.LastBoot.After(st.lastReset) {
		return rec.LastBoot
	}
	return st.lastReset
}

// bootResetDue reports whether reset_on_boot applies to an open of id now:
// the node is known, has booted before, and neither booted nor was reset in
// the last reset_guard. pxelinux and the tftpd open the file several times
// per boot; the guard makes only the first of them wipe. The caller holds
// the node's lock.
func (p *Provisioner) bootResetDue(st *nodeState, id node.ID) bool {
	guard, onBoot := p.policy()
	if !onBoot {
		return false
	}
	rec, ok := p.reg.Get(id)
	if !ok || rec.LastBoot.IsZero() {
		return false
	}
	return p.now().Sub(lastActive(st, rec)) >= guard
}

// Reset gives node a fresh root: unexport, unmount, move its writable layer
// aside, mount and export again with the same fsid, then delete the old
// layer in the background. It refuses, with an
// error wrapping ErrRecentBoot, a node that booted less than reset_guard
// ago, unless force. The work is not cancelled by ctx: a reset half done
// would leave the node without a root.
func (p *Provisioner) Reset(ctx context.Context, id node.ID, force bool) error {
	st, err := p.lockNode(ctx, id)
	if err != nil {
		return fmt.Errorf("reset %s: %w", id, err)
	}
	defer st.unlock()
	rec, ok := p.reg.Get(id)
	if !ok {
		return fmt.Errorf("reset %s: %w", id, ErrUnknownNode)
	}
	if rec.FSID == 0 {
		return fmt.Errorf("reset %s: the node never had a root (it is known for its install only): %w", id, ErrUnknownNode)
	}
	if err := p.guard("reset", "wiping it would corrupt the node", rec, force); err != nil {
		return err
	}
	return p.resetLocked(context.WithoutCancel(ctx), st, rec, "admin")
}

// guard refuses, with an error wrapping ErrRecentBoot, an operation that
// takes a node's root away while the node probably runs on it: it booted
// less than reset_guard ago. force overrides (the admin knows it is down).
func (p *Provisioner) guard(op, harm string, rec registry.Record, force bool) error {
	guard, _ := p.policy()
	if force || rec.LastBoot.IsZero() {
		return nil
	}
	if ago := p.now().Sub(rec.LastBoot); ago < guard {
		return fmt.Errorf("%s %s: it booted %s ago, within reset_guard (%s), and may be running on this root; %s (use -force if it is down): %w",
			op, rec.ID, ago.Round(time.Second), guard, harm, ErrRecentBoot)
	}
	return nil
}

// CheckGuard is guard for an operation carried out outside the daemon
// (`pxebootfs move` on the node's owner), against the node's record; a
// node this registry does not know never booted here.
func (p *Provisioner) CheckGuard(op, harm string, id node.ID, force bool) error {
	rec, ok := p.reg.Get(id)
	if !ok {
		return nil
	}
	return p.guard(op, harm, rec, force)
}

// resetLocked does the reset; the caller holds the node's lock. Whatever
// fails, it tries to leave the node with a working root (the old one if the
// wipe did not happen), and the next open retries what is missing.
func (p *Provisioner) resetLocked(ctx context.Context, st *nodeState, rec registry.Record, reason string) (err error) {
	start := p.now()
	log := p.log.With("node", rec.ID, "fsid", rec.FSID, "reason", reason)
	defer func() {
		if p.met != nil {
			p.met.Reset(reason, p.now().Sub(start), err)
		}
		if err != nil {
			log.Error("reset failed", "err", err, "duration", p.now().Sub(start))
			if rerr := p.reg.RecordError(rec.ID, err.Error()); rerr != nil {
				log.Warn("record error", "err", rerr)
			}
		}
	}()
	st.ready = false
	e := p.export(rec)

	t := p.now()
	if err := p.ex.Unexport(ctx, e); err != nil {
		return fmt.Errorf("reset %s: %w", rec.ID, err)
	}
	log.Info("reset: unexported", "duration", p.now().Sub(t))

	t = p.now()
	if err := p.ov.Unmount(rec.ID); err != nil {
		err = fmt.Errorf("reset %s: %w; the root is left as it was", rec.ID, err)
		if xerr := p.ex.Export(ctx, e); xerr != nil {
			return errors.Join(err, fmt.Errorf("export it again: %w", xerr))
		}
		st.ready = true
		return err
	}
	log.Info("reset: unmounted", "duration", p.now().Sub(t))

	t = p.now()
	// The old layer is only moved aside here (instant, atomic): the node
	// gets its fresh root at once and the old data is deleted afterwards,
	// in the background, however large it is. A wipe that fails after
	// moving the old layer aside has still reset the node; one that fails
	// before has not. Either way the node gets a root back, and the error
	// is reported.
	aside, wipeErr := p.ov.Wipe(rec.ID)
	if wipeErr == nil {
		log.Info("reset: writable layer moved aside", "duration", p.now().Sub(t))
	}
	defer func() {
		if len(aside) > 0 {
			p.discard(rec.ID, aside)
		}
	}()

	// A fresh layer moves to its root's current generation; a layer not
	// wiped stays over the one it was made over.
	pin := pinOf(rec)
	if wipeErr == nil {
		fresh, err := p.freshPin(rec.ID)
		if err != nil {
			// The layer is empty, so the old pin is still a root the
			// node can boot; the error is reported.
			wipeErr = fmt.Errorf("move to the current root generation: %w; staying on %s", err, pin)
		} else {
			pin = fresh
		}
	}
	t = p.now()
	if _, err := p.mountPinned(rec.ID, pin); err != nil {
		return errors.Join(wipeErr, fmt.Errorf("reset %s: %w", rec.ID, err))
	}
	log.Info("reset: overlay mounted", "root", pin.String(), "duration", p.now().Sub(t))

	t = p.now()
	if err := p.ex.Export(ctx, e); err != nil {
		return errors.Join(wipeErr, fmt.Errorf("reset %s: %w", rec.ID, err))
	}
	log.Info("reset: exported", "duration", p.now().Sub(t))
	st.ready = true
	if wipeErr != nil {
		return fmt.Errorf("reset %s: %w", rec.ID, wipeErr)
	}
	st.lastReset = p.now()
	if rec.LastError != "" {
		if err := p.reg.RecordError(rec.ID, ""); err != nil {
			log.Warn("clear error", "err", err)
		}
	}
	log.Info("reset: done", "duration", p.now().Sub(start))
	return nil
}

// Release unexports and unmounts node's root; its data and record stay, and
// its next boot provisions it again (as does the next daemon start, which
// restores every known node). With purge it also deletes the node's overlay
// data and forgets the node: its fsid is retired, never handed out again.
// Like Reset, it refuses a node that booted within reset_guard unless
// force, and the work is not cancelled by ctx.
func (p *Provisioner) Release(ctx context.Context, id node.ID, purge, force bool) (err error) {
	st, err := p.lockNode(ctx, id)
	if err != nil {
		return fmt.Errorf("release %s: %w", id, err)
	}
	defer st.unlock()
	ctx = context.WithoutCancel(ctx)
	rec, ok := p.reg.Get(id)
	if !ok {
		return fmt.Errorf("release %s: %w", id, ErrUnknownNode)
	}
	harm := "taking its root away would crash it"
	if purge {
		harm = "deleting its data under it would corrupt the node"
	}
	if err := p.guard("release", harm, rec, force); err != nil {
		return err
	}
	start := p.now()
	log := p.log.With("node", id, "fsid", rec.FSID, "purge", purge)
	defer func() {
		if err != nil {
			log.Error("release failed", "err", err, "duration", p.now().Sub(start))
		}
	}()
	st.ready = false

	t := p.now()
	if rec.FSID != 0 { // else it never had a root
		if err := p.ex.Unexport(ctx, p.export(rec)); err != nil {
			return fmt.Errorf("release %s: %w", id, err)
		}
		log.Info("release: unexported", "duration", p.now().Sub(t))
		t = p.now()
		if err := p.ov.Unmount(id); err != nil {
			return fmt.Errorf("release %s: %w", id, err)
		}
		log.Info("release: unmounted", "duration", p.now().Sub(t))
	}
	if !purge {
		// Durable, so the next start-up does not bring the root back.
		if err := p.reg.SetReleased(id, true); err != nil {
			return fmt.Errorf("release %s: %w", id, err)
		}
		log.Info("release: done", "duration", p.now().Sub(start))
		return nil
	}
	t = p.now()
	if err := p.ov.Remove(id); err != nil {
		return fmt.Errorf("purge %s: %w", id, err)
	}
	log.Info("release: overlay data deleted", "duration", p.now().Sub(t))
	if err := p.reg.Forget(id); err != nil {
		return fmt.Errorf("purge %s: %w", id, err)
	}
	st.lastReset = time.Time{}
	log.Info("release: purged; fsid retired", "duration", p.now().Sub(start))
	return nil
}

// Status lists every known node with whether its root is mounted and
// exported now. It reads the mount table once and lists the exports once,
// however many nodes there are.
func (p *Provisioner) Status(ctx context.Context) []NodeStatus {
	if p.reg == nil {
		return nil
	}
	recs := p.reg.All()
	var mounted map[node.ID]bool
	if p.ov != nil {
		m, err := p.ov.MountedNodes()
		if err != nil {
			p.log.Warn("status: list mounted overlays", "err", err)
		} else {
			mounted = m
		}
	}
	exported, err := p.listExports(ctx)
	if err != nil {
		p.log.Warn("status: list exports", "err", err)
	}
	out := make([]NodeStatus, len(recs))
	for i, rec := range recs {
		out[i].Record = rec
		if mounted != nil {
			out[i].Mounted = boolPtr(mounted[rec.ID])
		}
		if exported != nil {
			out[i].Exported = boolPtr(exported[p.export(rec)])
		}
	}
	return p.withOwners(out)
}

// withOwners adds, in cluster mode, each node's owner, and the nodes other
// servers own that this one never held.
func (p *Provisioner) withOwners(out []NodeStatus) []NodeStatus {
	if p.cluster == nil {
		return out
	}
	owners := p.cluster.Owners()
	for i := range out {
		out[i].Owner = p.cluster.Self().Server
		if o, ok := owners[out[i].ID]; ok {
			out[i].Owner = o.Server
			delete(owners, out[i].ID)
		}
	}
	for _, id := range slices.SortedFunc(maps.Keys(owners), node.ID.Compare) {
		st := NodeStatus{Record: registry.Record{ID: id}, Owner: owners[id].Server}
		if nr, ok := p.cluster.Root(id); ok {
			st.FSID, st.Root, st.RootGen = nr.FSID, nr.Root, nr.Gen
		}
		out = append(out, st)
	}
	return out
}

func boolPtr(b bool) *bool { return &b }
