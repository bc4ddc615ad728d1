package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
	"github.com/pxebootfs/pxebootfs/internal/render"
)

// nodeView is everything a node's config renders from besides the
// snapshot: its root and its install state. Render, Peek and Open all
// build one (peekView without side effects, openView with them) and render
// it with renderView, so the three cannot disagree.
type nodeView struct {
	root node.Root
	inst install.View
	// stable: the content changes only with a change announced to
	// OnChange callbacks (see Content.Stable).
	stable bool
}

// peekView is e's view now, with no side effects: the root as the
// provisioner knows it, and an inventory node with install = true that was
// never in install mode shown as its first open will make it (without the
// token, which that open makes).
func (c *Catalog) peekView(e Entry) nodeView {
	v := nodeView{stable: true}
	if c.opts.Prov != nil && e.provisioned() {
		v.root = c.opts.Prov.Peek(e.Node.ID)
		v.stable = v.root.Known
	}
	if c.opts.Inst != nil {
		v.inst = c.opts.Inst.View(e.Node.ID)
		if v.inst.Fresh && e.Inv != nil && e.Inv.Install {
			v.inst.State = registry.InstallPending
		}
		if v.inst.State != registry.InstallNone && v.inst.Token == "" {
			v.stable = false // its first open makes its token
		}
	}
	return v
}

// openView is e's view for a tftpd about to send its config: a node seen
// for the first time with inventory install = true enters install mode,
// and a node in full mode gets its root first, so a node never gets a
// config pointing at a root that is not there yet.
func (c *Catalog) openView(ctx context.Context, e Entry) (nodeView, error) {
	var v nodeView
	if c.opts.Inst != nil {
		v.inst = c.opts.Inst.View(e.Node.ID)
		// Only a node never in install mode enters it: the common
		// case, an installed or installing node, costs no registry
		// change and no token.
		if v.inst.Fresh && e.Inv != nil && e.Inv.Install {
			if err := c.opts.Inst.FirstSight(e.Node.ID); err != nil {
				return v, err
			}
			v.inst = c.opts.Inst.View(e.Node.ID)
		}
	}
	if c.opts.Prov != nil && e.provisioned() {
		root, err := c.opts.Prov.Prepare(ctx, e.Node)
		if err != nil {
			return v, err
		}
		v.root = root
	}
	return v, nil
}

// rendered is one render of a node's config.
type rendered struct {
	b []byte
	// used: the image versions the config names (image name -> version).
	used map[string]string
	// installing: the install template was used.
	installing bool
}

// renderView renders e from view v. Every {{image}} of one render resolves
// against one snapshot of the image index, so a config names one version
// of each image: the kernel and initrd a node fetches next always match.
func (c *Catalog) renderView(e Entry, v nodeView) (rendered, error) {
	var out rendered
	s := c.cur.Load()
	d := data(e, v.root, v.inst)
	d.HTTPBase = s.cfg.HTTPBase
	if images := s.imageFunc(); images != nil {
		d.SetImages(func(name, file string) (string, error) {
			p, err := images(name, file)
			if err == nil {
				if out.used == nil {
					out.used = map[string]string{}
				}
				out.used[name] = s.images.Images[name].Current
			}
			return p, err
		})
	}
	t, installing := c.templateOf(s, e, v.inst.State)
	b, err := t.Render(d)
	if err != nil {
		// The name is not served, as the README promises: pxelinux
		// falls through to its next name, as on a tftpd without the
		// file. Loaded templates passed a trial render, so this is a
		// node's own data (a var it lacks) or a render past its step
		// budget; say so in the log, which the tftpd cannot.
		err = fmt.Errorf("render %s for node %s: %w: %w", e.Name, e.Node.ID, err, ErrNotServed)
		c.renderFailed(e, err)
		return rendered{}, err
	}
	out.b, out.installing = b, installing
	return out, nil
}

// templateOf picks the template of node e in install state st: its own
// (inventory) or the loader's, for the role its state calls for. A node in
// install mode with no install template renders its usual one, as before
// install mode; installing tells whether an install template was chosen.
func (c *Catalog) templateOf(s *snapshot, e Entry, st registry.InstallState) (t *render.Template, installing bool) {
	role := config.RoleUsual
	switch st {
	case registry.InstallPending, registry.InstallRunning:
		role = config.RoleInstall
	case registry.InstallDone:
		role = config.RoleLocal
	}
	if t = c.own(s, e, role); t == nil && role == config.RoleInstall {
		role, t = config.RoleUsual, c.own(s, e, config.RoleUsual)
	}
	return t, role == config.RoleInstall
}

// own is e's own template of role r from the inventory, else the
// loader's (nil only for an unset install template).
func (c *Catalog) own(s *snapshot, e Entry, r config.Role) *render.Template {
	if e.Inv != nil {
		if t := e.Inv.Template(c.ld.Name, r); t != nil {
			return t
		}
	}
	return s.tmpls[r]
}

// data builds the template fields for a node.
func data(e Entry, root node.Root, v install.View) render.Data {
	d := render.Data{
		Node:    e.Node.ID.String(),
		IP:      e.Node.ID.Addr().String(),
		MAC:     e.Node.MAC,
		Name:    e.Name,
		FSID:    root.FSID,
		NodeDir: root.Dir,
		Root:    root.RootName,
		RootGen: root.RootGen,
		Kernel:  root.Kernel,
		Initrd:  root.Initrd,
		Server:  root.Server,

		InstallState: string(v.State),
		InstallToken: v.Token,
		CallbackURL:  v.CallbackURL,
	}
	if e.Inv != nil {
		d.Hostname, d.Vars = e.Inv.Hostname, e.Inv.Vars
	}
	return d
}

// Render returns the bytes a read of e would return now, with no side
// effects: nothing is provisioned.
func (c *Catalog) Render(e Entry) ([]byte, error) {
	switch e.Kind {
	case KindNode:
		r, err := c.renderView(e, c.peekView(e))
		return r.b, err
	case KindStatic:
		return readStatic(e)
	case KindGenerated:
		return e.Gen.Data, nil
	case KindBuiltin:
		return e.Builtin, nil
	}
	return nil, fmt.Errorf("render %q: kind %d has no content", e.Name, e.Kind)
}

// Content is what a served name holds at one moment: one version of it.
type Content struct {
	Data  []byte
	Mtime time.Time
	// Stable: the content changes only with a change announced to
	// OnChange callbacks (a node's config, its root known). Static files
	// (edited in place by admins, unwatched), generated content and
	// the config of a node not yet registered (its fsid is not yet its
	// own) are not stable.
	Stable bool
	// Final: no side effect of an open changes it (every name but a
	// node's config whose root or install token an open still has to
	// make): an open serves this content unless the name changed
	// meanwhile.
	Final bool
}

// Size is the content's length, what stat reports (a tftpd's tsize).
func (c Content) Size() int64 { return int64(len(c.Data)) }

// Peek is what e holds now, with no side effects: exactly what Render
// returns, with its mtime (a node's is its usual template's, so tools
// that compare times see a change when the template changes) and whether
// it is stable.
func (c *Catalog) Peek(e Entry) (Content, error) {
	switch e.Kind {
	case KindGenerated:
		return Content{Data: e.Gen.Data, Mtime: e.Gen.Time, Final: true}, nil
	case KindBuiltin:
		return Content{Data: e.Builtin, Stable: true, Final: true}, nil
	case KindStatic:
		return peekStatic(e)
	case KindNode:
		v := c.peekView(e)
		r, err := c.renderView(e, v)
		if err != nil {
			return Content{}, err
		}
		s := c.cur.Load()
		return Content{Data: r.b, Mtime: s.stamps[s.lc.Templates[config.RoleUsual]].mtime, Stable: v.stable, Final: v.stable}, nil
	}
	return Content{}, fmt.Errorf("peek %q: kind %d is no file", e.Name, e.Kind)
}

// Opened is the content one open of a name would serve, and what serving
// it records.
type Opened struct {
	Data   []byte
	commit func()
}

// Commit records that the content was served: the serve log line, a
// node's boot, an install config's serving (the loop guard counts them),
// the image versions it names. The filesystem calls it only when it serves
// this content: an open that finds a newer version than its lookup is
// looked up and opened again by the kernel, and counts once.
func (o Opened) Commit() {
	if o.commit != nil {
		o.commit()
	}
}

// Open returns the content to serve to one open of e. For a node in full
// mode it first gets the node's root ready (openView), so a node never gets
// a config pointing at a root that is not there yet.
func (c *Catalog) Open(ctx context.Context, e Entry) (Opened, error) {
	start := time.Now()
	var o Opened
	var err error
	switch e.Kind {
	case KindNode:
		o, err = c.openNode(ctx, e)
	case KindGenerated:
		o.Data, err = c.openGenerated(ctx, e)
	default:
		o.Data, err = c.Render(e)
	}
	attrs := []any{"loader", c.ld.Name, "name", e.Name}
	if e.Kind == KindNode {
		attrs = append(attrs, "node", e.Node.ID, "ip", e.Node.ID.Addr())
	}
	if err != nil {
		c.log.Error("serve", append(attrs, "duration", time.Since(start), "result", "error", "err", err)...)
		return Opened{}, err
	}
	record := o.commit
	o.commit = func() {
		if record != nil {
			record()
		}
		c.log.Info("serve", append(attrs, "bytes", len(o.Data), "duration", time.Since(start), "result", "ok")...)
	}
	return o, nil
}

func (c *Catalog) openNode(ctx context.Context, e Entry) (Opened, error) {
	v, err := c.openView(ctx, e)
	if err != nil {
		return Opened{}, err
	}
	r, err := c.renderView(e, v)
	if err != nil {
		return Opened{}, err
	}
	return Opened{Data: r.b, commit: func() {
		if c.opts.Prov != nil && e.provisioned() {
			c.opts.Prov.Booted(e.Node)
		}
		if c.opts.Served != nil {
			c.opts.Served.Note(r.used, time.Now())
		}
		if r.installing {
			c.opts.Inst.Served(e.Node.ID)
		}
	}}, nil
}

// provisioned reports whether e's node gets a root: every node, unless the
// inventory says provision = false (an installer needs no NFS root).
func (e Entry) provisioned() bool { return e.Inv == nil || e.Inv.Provision }

// renderLogEvery bounds how often failed renders are logged: a broken
// template fails for every node of a fleet at once.
const renderLogEvery = 10 * time.Second

// renderFailed logs a failed render, at most once per renderLogEvery, with
// how many others failed since the last line.
func (c *Catalog) renderFailed(e Entry, err error) {
	c.renderLog.Lock()
	now := time.Now()
	if now.Sub(c.renderLog.last) < renderLogEvery {
		c.renderLog.suppressed++
		c.renderLog.Unlock()
		return
	}
	suppressed := c.renderLog.suppressed
	c.renderLog.last, c.renderLog.suppressed = now, 0
	c.renderLog.Unlock()
	c.log.Error("render failed; the name is not served", "loader", c.ld.Name, "name", e.Name, "node", e.Node.ID, "err", err, "more_failures_not_logged", suppressed)
}
