package catalog

import (
	"fmt"
	"net"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/inventory"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/pxename"
)

// loadInventory reads cfg's inventory into s. It runs after the template
// and ethers are loaded: an inventory MAC that ethers maps to another IP is
// ambiguous, and every inventory node using pxe_template must render with
// it (a var the template needs and the node lacks is found here, naming
// the node, rather than at its next boot). The same holds for the loader's
// usual template, whichever loader's.
func loadInventory(cfg *config.Config, s *snapshot) error {
	if cfg.Inventory == "" {
		return nil
	}
	s.stamps[cfg.Inventory] = stampOf(cfg.Inventory)
	inv, err := inventory.Load(cfg.Inventory)
	if err != nil {
		return fmt.Errorf("config %s: inventory: %w", cfg.File, err)
	}
	// Per-node templates are known only now; a change between their read
	// and this stamp is seen at their next change.
	for _, p := range inv.Files()[1:] {
		s.stamps[p] = stampOf(p)
	}
	for _, n := range inv.Nodes() {
		for _, m := range n.MACs {
			if ip, ok := s.ethers.Lookup(m); ok && ip != n.ID.Addr() {
				return fmt.Errorf("config %s: inventory %s:%d: [node %q] mac %s is %s here but ethers %s maps it to %s",
					cfg.File, inv.File(), n.Line, n.Name, m, n.ID.Addr(), cfg.Ethers, ip)
			}
		}
		if n.Template(s.lc.Keys.Loader, config.RoleUsual) == nil {
			if _, err := s.tmpls[config.RoleUsual].Render(n.TrialData()); err != nil {
				return fmt.Errorf("config %s: inventory %s:%d: [node %q] with %s: %w", cfg.File, inv.File(), n.Line, n.Name, s.lc.Keys.Templates[config.RoleUsual], err)
			}
		}
	}
	s.inv = inv
	return nil
}

// lookupMAC maps a MAC to its node: ethers first, then the inventory (they
// cannot disagree, see loadInventory). An ethers address that is no IPv4
// node is not a node (ethers accepts IPv4 only, so this does not happen).
func (s *snapshot) lookupMAC(m net.HardwareAddr) (node.ID, bool) {
	if a, ok := s.ethers.Lookup(m); ok {
		id, err := node.FromAddr(a)
		return id, err == nil
	}
	if n := s.inv.ByMAC(m); n != nil {
		return n.ID, true
	}
	return node.ID{}, false
}

// firstMAC is the MAC a node asked for by IP gets as .MAC: ethers' lowest,
// else the inventory's first, else "".
func (s *snapshot) firstMAC(id node.ID) string {
	if macs := s.ethers.MACsFor(id.Addr()); len(macs) > 0 {
		return pxename.ColonMAC(macs[0])
	}
	if n := s.inv.ByID(id); n != nil {
		return n.MAC()
	}
	return ""
}

// InventoryNodes lists the inventory's nodes (none without an inventory).
func (c *Catalog) InventoryNodes() []*inventory.Host { return c.cur.Load().inv.Nodes() }

// RootOf is the named root a fresh layer of id is made over: the
// inventory's root for the node, else the config's root ("" means
// root_dir).
func (c *Catalog) RootOf(id node.ID) string {
	s := c.cur.Load()
	if n := s.inv.ByID(id); n != nil && n.Root != "" {
		return n.Root
	}
	return s.cfg.Root
}
