package catalog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/pxename"
)

// query is one name being resolved: parsed once, by the loader's grammar,
// and carried through the rules.
type query struct {
	ctx  context.Context
	s    *snapshot
	name string
	pn   pxename.Name // zero Kind: not a node name
}

// A rule decides what a name is (ok), refuses it (err: the walk ends, the
// name is not served), or passes it to the next rule.
type rule func(c *Catalog, q *query) (e Entry, ok bool, err error)

// rules is the one order in which a name is decided. A node name is always
// the node's (never a static file's); a static file or subdirectory of the
// admin's comes before a built-in one; the content generator gets only
// what nothing else serves (and, with generator_for_nodes, node names
// first: see nodeEntry).
var rules = []rule{
	(*Catalog).nodeByIP,
	(*Catalog).nodeByMAC,
	(*Catalog).staticFile,
	(*Catalog).staticSubdir,
	(*Catalog).builtin,
	(*Catalog).generated,
}

// Resolve decides what name is, walking the rules once. ctx bounds a
// content generator run (the caller's LOOKUP or GETATTR may be
// interrupted). Errors wrap ErrNotServed for names we do not serve.
func (c *Catalog) Resolve(ctx context.Context, name string) (Entry, error) {
	q := &query{ctx: ctx, s: c.cur.Load(), name: name}
	q.pn, _ = c.ld.Parse(name)
	for _, r := range rules {
		e, ok, err := r(c, q)
		if err != nil {
			return Entry{}, err
		}
		if ok {
			return e, nil
		}
	}
	return Entry{}, notServedf(name, "no node or static file of that name")
}

// nodeByIP: a name that is a node's IP (in any form the loader's grammar has) is
// that node's config, if allow serves the address; nothing else may serve
// a name refused here.
func (c *Catalog) nodeByIP(q *query) (Entry, bool, error) {
	if q.pn.Kind != pxename.KindIP {
		return Entry{}, false, nil
	}
	id := q.pn.ID
	if !q.s.allow.Allowed(id.Addr()) {
		return Entry{}, false, notServedf(q.name, "%s is outside allow", id.Addr())
	}
	e := Entry{Name: q.name, Kind: KindNode, Node: node.Node{ID: id, MAC: q.s.firstMAC(id)}}
	return c.nodeEntry(q, e), true, nil
}

// nodeByMAC: a 01-<mac> name of a MAC that ethers or the inventory knows is
// that node's config, if allow serves its address. An unknown MAC passes
// on: it may have a hand-written or generated file.
func (c *Catalog) nodeByMAC(q *query) (Entry, bool, error) {
	if q.pn.Kind != pxename.KindMAC {
		return Entry{}, false, nil
	}
	id, ok := q.s.lookupMAC(q.pn.MAC)
	if !ok {
		return Entry{}, false, nil
	}
	if !q.s.allow.Allowed(id.Addr()) {
		return Entry{}, false, notServedf(q.name, "%s (from ethers) is outside allow", id.Addr())
	}
	e := Entry{Name: q.name, Kind: KindNode, Node: node.Node{ID: id, MAC: pxename.ColonMAC(q.pn.MAC)}}
	return c.nodeEntry(q, e), true, nil
}

// nodeEntry completes a node's entry: its inventory record and, with
// generator_for_nodes, the content generator's answer, which replaces the
// template when it gives one. The inode stays the node's, so ls and
// lookup agree.
func (c *Catalog) nodeEntry(q *query, e Entry) Entry {
	e.Inv = q.s.inv.ByID(e.Node.ID)
	if c.gen == nil || !c.gen.forNodes {
		return e
	}
	if res, err := c.gen.run.Get(q.ctx, c.gen.request(q.name, e.Node), 0); err == nil {
		e.Kind, e.Gen = KindGenerated, res
	}
	return e
}

// staticPath is the static directory's path of q's name when the name is
// a valid static name and the loader has a static directory. Hostile
// names (pxename.CheckStatic) are refused here, so no later rule (the
// content generator included) ever sees them.
func (q *query) staticPath() (string, error) {
	if err := pxename.CheckStatic(q.name); err != nil {
		return "", notServedf(q.name, "%v", err)
	}
	if q.s.lc.StaticDir == "" {
		return "", nil
	}
	return filepath.Join(q.s.lc.StaticDir, q.name), nil
}

// staticFile: a regular file of the static directory. Symlinks are not
// followed: they could point anywhere on the server.
func (c *Catalog) staticFile(q *query) (Entry, bool, error) {
	p, err := q.staticPath()
	if err != nil || p == "" {
		return Entry{}, false, err
	}
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return Entry{}, false, nil
	}
	return Entry{Name: q.name, Kind: KindStatic, Static: p}, true, nil
}

// staticSubdir: a directory of the static directory, for loaders that
// serve their static tree whole (Loader.StaticSubdirs).
func (c *Catalog) staticSubdir(q *query) (Entry, bool, error) {
	if !c.ld.StaticSubdirs {
		return Entry{}, false, nil
	}
	p, err := q.staticPath()
	if err != nil || p == "" {
		return Entry{}, false, err
	}
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() {
		return Entry{}, false, nil
	}
	return Entry{Name: q.name, Kind: KindDir, Static: p}, true, nil
}

// builtin: a file the loader ships, when the admin has none of that name.
func (c *Catalog) builtin(q *query) (Entry, bool, error) {
	b, ok := c.ld.Builtins[q.name]
	if !ok {
		return Entry{}, false, nil
	}
	return Entry{Name: q.name, Kind: KindBuiltin, Builtin: b}, true, nil
}

// generated: the content generator, for a name nothing above serves. An
// unknown 01-<mac> goes with --mac.
func (c *Catalog) generated(q *query) (Entry, bool, error) {
	if c.gen == nil {
		return Entry{}, false, nil
	}
	if _, err := q.staticPath(); err != nil {
		return Entry{}, false, err // hostile names never reach the program
	}
	var n node.Node
	if q.pn.Kind == pxename.KindMAC {
		n.MAC = pxename.ColonMAC(q.pn.MAC)
	}
	res, err := c.gen.run.Get(q.ctx, c.gen.request(q.name, n), 0)
	if err != nil {
		return Entry{}, false, fmt.Errorf("%q: %w: %w", q.name, err, ErrNotServed)
	}
	return Entry{Name: q.name, Kind: KindGenerated, Node: n, Gen: res}, true, nil
}

// shadowed reports whether a static file named with pn is hidden by a node
// name (a node's IP, or a MAC ethers or the inventory knows).
func (s *snapshot) shadowed(pn pxename.Name) bool {
	switch pn.Kind {
	case pxename.KindIP:
		return true
	case pxename.KindMAC:
		_, known := s.lookupMAC(pn.MAC)
		return known
	}
	return false
}
