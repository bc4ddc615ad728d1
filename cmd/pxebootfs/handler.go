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
	return withCode(h.o.prov.Reset(ctx, id, force))
}

func (h controlHandler) Release(ctx context.Context, id node.ID, purge, force bool) error {
	if h.o.prov == nil {
		return errConfigOnly
	}
	err := h.o.prov.Release(ctx, id, purge, force)
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
