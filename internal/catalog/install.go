package catalog

import (
	"fmt"
	"net/netip"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
	"github.com/pxebootfs/pxebootfs/internal/render"
)

// Installer is what the catalog needs of install mode; *install.Manager
// implements it.
type Installer interface {
	View(id node.ID) install.View
	FirstSight(id node.ID) error
	Served(id node.ID)
}

var _ Installer = (*install.Manager)(nil)

// SetInstaller turns install mode on: node configs are rendered from the
// install or local template by the node's install state. Call it before
// serving.
func (c *Catalog) SetInstaller(i Installer) { c.inst = i }

// NodeChanged drops what the kernel caches after id's config changed
// without a file changing (its install state). Every cached name is
// dropped: a node has several names (hex IP, 01-<mac>, GRUB's), and
// install changes are rare next to fetches.
func (c *Catalog) NodeChanged(id node.ID) { c.changed() }

// Allowed reports whether the allow list serves address a (callbacks from
// elsewhere are refused).
func (c *Catalog) Allowed(a netip.Addr) bool { return c.cur.Load().allow.Allowed(a) }

// builtinLocal is the config of an installed node when local_template is
// unset: boot the first local disk. The GRUB twin returns to the firmware,
// which boots its next entry.
var (
	builtinLocal = mustBuiltin("built-in local_template", `# pxebootfs: node <NODE> is installed; boot from the local disk.
DEFAULT local
LABEL local
	LOCALBOOT 0
`)
	builtinGrubLocal = mustBuiltin("built-in grub_local_template", `# pxebootfs: node <NODE> is installed; back to the firmware, which boots the local disk.
exit
`)
)

func mustBuiltin(name, src string) *render.Template {
	t, err := render.Parse(name, []byte(src))
	if err != nil {
		panic(err)
	}
	return t
}

// loadInstallTemplates reads install_template and local_template (or their
// GRUB twins) into s.
func (c *Catalog) loadInstallTemplates(cfg *config.Config, s *snapshot) error {
	instKey, instPath, localKey, localPath, local := "install_template", cfg.InstallTemplate, "local_template", cfg.LocalTemplate, builtinLocal
	if c.grub {
		instKey, instPath, localKey, localPath, local = "grub_install_template", cfg.GrubInstallTemplate, "grub_local_template", cfg.GrubLocalTemplate, builtinGrubLocal
	}
	s.localTmpl = local
	for _, t := range []struct {
		key, path string
		dst       **render.Template
	}{{instKey, instPath, &s.installTmpl}, {localKey, localPath, &s.localTmpl}} {
		if t.path == "" {
			continue
		}
		s.stamps[t.path] = stampOf(t.path)
		tmpl, err := render.Load(t.path)
		if err != nil {
			return fmt.Errorf("config %s: %s: %w", cfg.File, t.key, err)
		}
		*t.dst = tmpl
	}
	return nil
}

// HasInstallTemplate reports whether a node id in install mode would be
// served an install template by this catalog (its own from the inventory,
// or install_template / grub_install_template), rather than its usual one.
func (c *Catalog) HasInstallTemplate(id node.ID) bool {
	s := c.cur.Load()
	e := Entry{Kind: KindNode, Node: node.Node{ID: id}, Inv: s.inv.ByID(id)}
	return c.installTemplate(s, e, install.View{State: registry.InstallPending}) != nil
}

// installView is the install state e's config renders from now, without
// side effects. An inventory node with install = true that was never in
// install mode is shown as its first open will make it (without a token,
// which that open makes).
func (c *Catalog) installView(e Entry) install.View {
	if c.inst == nil || e.Kind != KindNode {
		return install.View{}
	}
	v := c.inst.View(e.Node.ID)
	if v.Fresh && e.Inv != nil && e.Inv.Install {
		v.State = registry.InstallPending
	}
	return v
}

// openInstall is installView for an open: it enters install mode on first
// sight of an inventory node with install = true.
func (c *Catalog) openInstall(e Entry) (install.View, error) {
	if c.inst == nil {
		return install.View{}, nil
	}
	if e.Inv != nil && e.Inv.Install {
		if err := c.inst.FirstSight(e.Node.ID); err != nil {
			return install.View{}, err
		}
	}
	return c.inst.View(e.Node.ID), nil
}

// installTemplate picks the template of a node in install state v, nil
// when its state does not choose one (none, or install mode without an
// install template: the usual template then, as before install mode).
func (c *Catalog) installTemplate(s *snapshot, e Entry, v install.View) *render.Template {
	var own, def *render.Template
	switch v.State {
	case registry.InstallPending, registry.InstallRunning:
		def = s.installTmpl
		if e.Inv != nil {
			own = e.Inv.InstallTemplate
			if c.grub {
				own = e.Inv.GrubInstallTemplate
			}
		}
	case registry.InstallDone:
		def = s.localTmpl
		if e.Inv != nil {
			own = e.Inv.LocalTemplate
			if c.grub {
				own = e.Inv.GrubLocalTemplate
			}
		}
	default:
		return nil
	}
	if own != nil {
		return own
	}
	return def
}
