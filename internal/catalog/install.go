package catalog

import (
	"net/netip"

	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

// Installer is what the catalog needs of install mode; *install.Manager
// implements it.
type Installer interface {
	View(id node.ID) install.View
	FirstSight(id node.ID) error
	Served(id node.ID)
}

var _ Installer = (*install.Manager)(nil)

// NodeChanged drops what the kernel caches after id's config changed
// without a file changing (its install state). Every cached name is
// dropped: a node has several names (hex IP, 01-<mac>, other loaders'), and
// install changes are rare next to fetches.
func (c *Catalog) NodeChanged(id node.ID) { c.changed() }

// Allowed reports whether the allow list serves address a (callbacks from
// elsewhere are refused).
func (c *Catalog) Allowed(a netip.Addr) bool { return c.cur.Load().allow.Allowed(a) }

// HasInstallTemplate reports whether a node id in install mode would be
// served an install template by this catalog (its own from the inventory,
// or the loader's install template), rather than its usual one.
func (c *Catalog) HasInstallTemplate(id node.ID) bool {
	s := c.cur.Load()
	e := Entry{Kind: KindNode, Node: node.Node{ID: id}, Inv: s.inv.ByID(id)}
	_, installing := c.templateOf(s, e, registry.InstallPending)
	return installing
}
