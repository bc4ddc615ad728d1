package main

// This file is the control socket's handler: admin requests carried out
// in the daemon (nodes, reset, release, install, installed, reload).

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"strings"

	"github.com/pxebootfs/pxebootfs/internal/cluster"
	"github.com/pxebootfs/pxebootfs/internal/control"
	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/provision"
	"github.com/pxebootfs/pxebootfs/internal/registry"
	"github.com/pxebootfs/pxebootfs/internal/roots"
)

// controlHandler carries out admin requests in the daemon.
type controlHandler struct{ o *daemonOps }

var _ control.Handler = controlHandler{}

// errConfigOnly answers node commands sent to a config-only daemon.
var errConfigOnly = &control.Error{Code: control.CodeUnknownNode, Msg: "config-only mode: this daemon has no nodes"}

func (h controlHandler) Nodes(ctx context.Context) ([]control.NodeStatus, error) {
	if h.o.prov == nil {
		return installNodes(h.o.inst.Records(), h.o.inst), nil
	}
	return toControlNodes(h.o.prov.Status(ctx), h.o.inst), nil
}

func (h controlHandler) Reset(ctx context.Context, id node.ID, force bool) error {
	if h.o.prov == nil {
		return errConfigOnly
	}
	if owner, ok := h.remoteOwner(id); ok {
		return h.askOwner(ctx, owner, cluster.Request{Node: id.String(), Action: "reset", Force: force})
	}
	return h.resetHere(ctx, id, force)
}

func (h controlHandler) resetHere(ctx context.Context, id node.ID, force bool) error {
	return withCode(h.o.prov.Reset(ctx, id, force))
}

func (h controlHandler) Release(ctx context.Context, id node.ID, purge, force bool) error {
	if h.o.prov == nil {
		return errConfigOnly
	}
	if owner, ok := h.remoteOwner(id); ok {
		return h.askOwner(ctx, owner, cluster.Request{Node: id.String(), Action: "release", Purge: purge, Force: force})
	}
	return h.releaseHere(ctx, id, purge, force)
}

// remoteOwner is, in cluster mode, the server holding id's root if it is
// another one.
func (h controlHandler) remoteOwner(id node.ID) (string, bool) {
	if h.o.cl == nil {
		return "", false
	}
	o, ok := h.o.cl.Owner(id)
	if !ok || o.Server == h.o.cl.Self().Server {
		return "", false
	}
	return o.Server, true
}

// askOwner has the owner's daemon carry out r, and returns its outcome as
// this server's would be.
func (h controlHandler) askOwner(ctx context.Context, owner string, r cluster.Request) error {
	a, err := h.o.cl.Ask(ctx, owner, r)
	if err != nil {
		return err
	}
	if a.Err != "" {
		return &control.Error{Code: control.Code(a.Code), Msg: a.Err + " (on " + owner + ", which owns it)"}
	}
	return nil
}

// answerRequests carries out the admin actions other servers ask of this
// one (the owner) and answers them, until they are closed.
func (h controlHandler) answerRequests(ctx context.Context, reqs <-chan cluster.Request) {
	for r := range reqs {
		id, err := node.ParseHex(r.Node)
		if err == nil {
			switch r.Action {
			case cluster.ActionPrepare:
				h.o.prov.Adopt(ctx, id)
			case "reset":
				err = h.resetHere(ctx, id, r.Force)
			case "release":
				err = h.releaseHere(ctx, id, r.Purge, r.Force)
			default:
				err = fmt.Errorf("unknown action %q", r.Action)
			}
		}
		h.o.log.Info("cluster: carried out a request", "node", r.Node, "action", r.Action, "from", r.From, "err", err)
		a := cluster.Answer{}
		if err != nil {
			a.Err, a.Code = err.Error(), string(control.CodeFailed)
			var ce *control.Error
			if errors.As(err, &ce) {
				a.Err, a.Code = ce.Msg, string(ce.Code)
			}
		}
		if err := h.o.cl.Reply(ctx, r, a); err != nil {
			h.o.log.Warn("cluster: answer a request", "node", r.Node, "action", r.Action, "err", err)
		}
	}
}

func (h controlHandler) releaseHere(ctx context.Context, id node.ID, purge, force bool) error {
	err := h.o.prov.Release(ctx, id, purge, force)
	if err == nil && h.o.cl != nil {
		// The other servers must not send the node to a root that is
		// gone: they ask for it again at its next boot.
		if uerr := h.o.cl.Unpublish(ctx, id); uerr != nil {
			h.o.log.Warn("cluster: withdraw the released root", "node", id, "err", uerr)
		}
	}
	if !errors.Is(err, provision.ErrUnknownNode) {
		h.o.met.Release(purge, err)
	}
	if err == nil && purge {
		// A forgotten node leaves nothing behind, its installer's last
		// failure report included.
		if rerr := os.Remove(h.o.inst.ReportPath(id)); rerr != nil && !errors.Is(rerr, iofs.ErrNotExist) {
			h.o.log.Warn("release -purge: remove install report", "node", id, "err", rerr)
		}
	}
	return withCode(err)
}

func (h controlHandler) Reload(ctx context.Context) error {
	return h.o.reload("command")
}

// withCode gives provisioning errors the control code a command turns into
// its exit code.
func withCode(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, provision.ErrUnknownNode), errors.Is(err, registry.ErrUnknownNode):
		return &control.Error{Code: control.CodeUnknownNode, Msg: err.Error()}
	case errors.Is(err, provision.ErrRecentBoot):
		return &control.Error{Code: control.CodeRefused, Msg: err.Error()}
	}
	return err
}

func toControlNodes(st []provision.NodeStatus, inst *install.Manager) []control.NodeStatus {
	out := make([]control.NodeStatus, len(st))
	for i, s := range st {
		out[i] = controlNode(s.Record, inst)
		out[i].Mounted, out[i].Exported, out[i].Owner = s.Mounted, s.Exported, s.Owner
	}
	return out
}

// installNodes lists the records of config-only mode, where nodes have no
// root: only install states.
func installNodes(recs []registry.Record, inst *install.Manager) []control.NodeStatus {
	out := make([]control.NodeStatus, len(recs))
	for i, r := range recs {
		out[i] = controlNode(r, inst)
	}
	return out
}

func controlNode(r registry.Record, inst *install.Manager) control.NodeStatus {
	var root, gen string
	if r.FSID != 0 {
		pin := roots.Pin{Root: r.Root, Gen: r.RootGen}
		root, gen = roots.Legacy, roots.LegacyGen
		if !pin.IsLegacy() {
			root, gen = pin.Root, pin.Gen
		}
	}
	return control.NodeStatus{
		Node: r.ID, IP: r.ID.Addr(), MAC: r.MAC, FSID: r.FSID, Root: root, RootGeneration: gen,
		Created: r.Created, LastBoot: r.LastBoot, BootCount: r.BootCount, LastError: r.LastError,
		Install: string(r.Install.State), InstallChanged: r.Install.Changed,
		InstallLoop: inst.Loop(r.Install), InstallError: r.Install.Error,
	}
}

// Install puts id in install mode, once it is sure that the node will be
// served an install config: within allow, and with an install template
// for it.
func (h controlHandler) Install(ctx context.Context, id node.ID) error {
	if !h.o.cats.allowed(id.Addr()) {
		return &control.Error{Code: control.CodeRefused, Msg: fmt.Sprintf("%s (%s) is outside allow: it would never be served its install config", id, id.Addr())}
	}
	if !h.o.hasInstallTemplate(id) {
		return &control.Error{Code: control.CodeRefused, Msg: fmt.Sprintf("%s: no install template applies (set install_template in %s, or install_template for the node in the inventory)", id, h.o.cats[0].Config().File)}
	}
	return withCode(h.o.inst.Enter(id, "admin"))
}

// hasInstallTemplate: an install template applies to id under some
// loader.
func (o *daemonOps) hasInstallTemplate(id node.ID) bool {
	for _, c := range o.cats {
		if c.HasInstallTemplate(id) {
			return true
		}
	}
	return false
}

func (h controlHandler) Installed(ctx context.Context, id node.ID) error {
	err := h.o.inst.Finish(id)
	if errors.Is(err, install.ErrNotInstalling) {
		return &control.Error{Code: control.CodeRefused, Msg: err.Error()}
	}
	return withCode(err)
}

// Select lists the inventory nodes whose var NAME is value; where is
// "NAME=value" or "var.NAME=value".
func (h controlHandler) Select(ctx context.Context, where string) ([]node.ID, error) {
	name, value, ok := strings.Cut(where, "=")
	name = strings.TrimPrefix(strings.TrimSpace(name), "var.")
	if !ok || name == "" {
		return nil, &control.Error{Code: control.CodeBadRequest, Msg: fmt.Sprintf("-where %q: want NAME=value (an inventory var.NAME)", where)}
	}
	var ids []node.ID
	for _, n := range h.o.cats[0].InventoryNodes() {
		if v, ok := n.Vars[name]; ok && v == strings.TrimSpace(value) {
			ids = append(ids, n.ID)
		}
	}
	return ids, nil
}
