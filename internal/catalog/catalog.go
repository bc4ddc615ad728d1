// Package catalog decides what each name in one boot loader's directory is
// and what it holds: a node's config rendered from a template, an admin's
// static file, a built-in file, a content generator's output, or nothing.
// It is the policy behind the FUSE filesystem and behind `pxebootfs
// render`, so both always agree byte for byte.
//
// # Loaders
//
// A catalog serves one loader's directory (internal/loader). What differs
// between loaders (how a node's file is named, built-in files, whether
// static subdirectories are served, which keys hold the templates) is in
// the Loader value; nothing here branches on which loader it is. Loaders
// of one daemon share one provisioner, so a node keeps one root whichever
// loader asks.
//
// # Names
//
// A name is decided once per lookup by walking one ordered list of rules
// (resolve.go): node by IP, node by MAC, static file, static subdirectory,
// built-in file, content generator. A node name is always generated, never
// taken from the static directory, and is served only when the node's
// address passes the allow list. Everything else is "not found", so
// pxelinux falls through its search order as it would on a plain tftpd.
//
// # Inventory and content generator
//
// An inventory (inventory.go) adds MACs served like ethers entries, a host
// name, variables and templates of its own to individual nodes, and can
// exempt a node from provisioning. A content generator (generated.go) is
// asked for the names nothing above serves, and with generator_for_nodes
// for node names first; its output is served as KindGenerated.
//
// # Reloading
//
// The templates, the ethers table and the allow list live in an immutable
// snapshot swapped atomically; a reload that fails keeps the old snapshot.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/ethers"
	"github.com/pxebootfs/pxebootfs/internal/generator"
	"github.com/pxebootfs/pxebootfs/internal/image"
	"github.com/pxebootfs/pxebootfs/internal/inventory"
	"github.com/pxebootfs/pxebootfs/internal/loader"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/pxename"
	"github.com/pxebootfs/pxebootfs/internal/render"
)

// ErrNotServed is wrapped by every error for a name we do not serve; it also
// matches fs.ErrNotExist so callers at the FUSE edge map it to ENOENT.
var ErrNotServed = notServed{}

type notServed struct{}

func (notServed) Error() string        { return "not served" }
func (notServed) Is(target error) bool { return target == fs.ErrNotExist }

func notServedf(name, format string, args ...any) error {
	return fmt.Errorf("%q: %s: %w", name, fmt.Sprintf(format, args...), ErrNotServed)
}

// Kind tells what a resolved name is.
type Kind int

const (
	// KindNode is a node's config, rendered from a template.
	KindNode Kind = iota + 1
	// KindStatic is a regular file in the static directory, served as it is.
	KindStatic
	// KindGenerated is the content_generator program's output.
	KindGenerated
	// KindBuiltin is a file the loader ships (Loader.Builtins).
	KindBuiltin
	// KindDir is a subdirectory of the static directory, served as it is
	// (loaders with StaticSubdirs).
	KindDir
)

// Entry is a resolved name.
type Entry struct {
	Name   string
	Kind   Kind
	Node   node.Node         // KindNode; KindGenerated: whatever the name told (MAC only for an unknown 01-<mac>)
	Static string            // KindStatic, KindDir: absolute path in the static directory
	Inv    *inventory.Host   // KindNode, KindGenerated: the node's inventory record, nil if none
	Gen    *generator.Result // KindGenerated: the program's output
	// Builtin: KindBuiltin's content.
	Builtin []byte
}

// snapshot is everything a reload replaces, immutable once published.
type snapshot struct {
	cfg *config.Config // what it was loaded from; SetConfig replaces it
	lc  config.LoaderConfig
	// tmpls are the loader's templates by role: the usual one always,
	// install when configured (nil otherwise), local always (the
	// loader's built-in one when unset).
	tmpls       [config.NumRoles]*render.Template
	ethers      *ethers.Table
	allow       *pxename.Allow
	stamps      map[string]stamp     // files watched for changes
	inv         *inventory.Inventory // nil without an inventory
	images      *image.Index         // nil without tftp_root
	imagesRel   string               // images_dir relative to tftp_root
	imagesIndex string               // the index file, among stamps
}

type stamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

// Catalog resolves and renders the names of one loader. Safe for
// concurrent use.
type Catalog struct {
	ld   *loader.Loader
	opts Options
	log  *slog.Logger
	cur  atomic.Pointer[snapshot]
	gen  *contentGen // nil without content_generator

	subMu sync.Mutex
	subs  []func() // OnChange

	renderLog struct {
		sync.Mutex
		last       time.Time
		suppressed int
	}
}

// Options are what a catalog serves with besides its loader and config.
// Every field may be left zero.
type Options struct {
	// Prov gives nodes their roots; nil is config-only mode.
	Prov node.Provisioner
	// Inst is install mode: a node's install state picks its template;
	// nil without install mode.
	Inst Installer
	// Served records the image versions served configs name; nil
	// records nothing.
	Served Ledger
	// Mountpoint is where the catalog is mounted, for the content
	// generator's --file; "" is DefaultMountpoint.
	Mountpoint string
	Log        *slog.Logger
}

// Ledger is where a catalog notes the image versions the configs it
// serves name; *image.Served is one.
type Ledger interface {
	Note(used map[string]string, at time.Time)
}

// New builds the catalog of loader ld from cfg, loading its templates,
// ethers and inventory. ld must be configured in cfg (cfg.Loader). A New
// with zero Options is how a config is checked: it loads everything and
// changes nothing.
func New(ld *loader.Loader, cfg *config.Config, opts Options) (*Catalog, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{ld: ld, opts: opts, log: log}
	gen, err := newContentGen(cfg, opts.Mountpoint, log)
	if err != nil {
		return nil, err
	}
	c.gen = gen
	s, err := c.load(cfg)
	if err != nil {
		return nil, err
	}
	c.cur.Store(s)
	return c, nil
}

// Loader is the loader this catalog serves.
func (c *Catalog) Loader() *loader.Loader { return c.ld }

func (c *Catalog) load(cfg *config.Config) (*snapshot, error) {
	lc, ok := cfg.Loader(c.ld.Name)
	if !ok {
		return nil, fmt.Errorf("config %s: boot loader %s is not configured", cfg.File, c.ld.Name)
	}
	s := &snapshot{
		cfg:    cfg,
		lc:     lc,
		allow:  pxename.NewAllow(cfg.Allow),
		stamps: map[string]stamp{},
	}
	s.tmpls[config.RoleLocal] = c.ld.Local
	// Stamp before reading, so a change that lands while we read is seen
	// again by the next poll rather than lost.
	for r, path := range lc.Templates {
		if path == "" {
			continue
		}
		s.stamps[path] = stampOf(path)
		t, err := render.Load(path)
		if err != nil {
			return nil, fmt.Errorf("config %s: %s: %w", cfg.File, lc.Keys.Templates[r], err)
		}
		s.tmpls[r] = t
	}
	if cfg.Ethers != "" {
		s.stamps[cfg.Ethers] = stampOf(cfg.Ethers)
		e, err := ethers.Load(cfg.Ethers)
		if err != nil {
			return nil, fmt.Errorf("config %s: ethers: %w", cfg.File, err)
		}
		s.ethers = e
	}
	if err := loadInventory(cfg, s); err != nil {
		return nil, err
	}
	if err := loadImages(cfg, s); err != nil {
		return nil, err
	}
	if err := c.trial(s); err != nil {
		return nil, err
	}
	return s, nil
}

// trial renders every template s would serve with, the loader's and the
// inventory's, once, with {{image}} resolved against s's image index: a
// template that would fail for every node (an image not imported, a
// looping range) is refused when it is loaded, at start as at a reload,
// and the previous snapshot keeps serving.
func (c *Catalog) trial(s *snapshot) error {
	images := s.imageFunc()
	for r, t := range s.tmpls {
		if t == nil || t == c.ld.Local {
			continue
		}
		if err := t.Trial(images); err != nil {
			return fmt.Errorf("config %s: %s: %w", s.cfg.File, s.lc.Keys.Templates[r], err)
		}
	}
	for _, n := range s.inv.Nodes() {
		for r := range config.NumRoles {
			if t := n.Template(c.ld.Name, r); t != nil {
				if err := t.Trial(images); err != nil {
					return fmt.Errorf("config %s: inventory %s:%d: [node %q] %s: %w", s.cfg.File, s.inv.File(), n.Line, n.Name, config.KeysOf(c.ld.Name).Inventory[r], err)
				}
			}
		}
	}
	return nil
}

// imageFunc resolves {{image}} against s's index; nil without tftp_root
// (render then says images are not configured).
func (s *snapshot) imageFunc() render.ImageFunc {
	if s.images == nil {
		return nil
	}
	return func(name, file string) (string, error) {
		p, err := s.images.Path(s.imagesRel, name, file)
		if errors.Is(err, image.ErrNotFound) {
			return "", fmt.Errorf("%w (pxebootfs image import %s %s=SOURCE)", err, name, file)
		}
		return p, err
	}
}

func stampOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	st := stamp{mtime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(interface{ Ino() uint64 }); ok {
		st.ino = sys.Ino()
	}
	return st
}

// Reload re-reads the templates and ethers. On error the old snapshot keeps
// serving. A SetConfig that lands while it reads wins: its snapshot is newer.
func (c *Catalog) Reload() error {
	old := c.cur.Load()
	s, err := c.load(old.cfg)
	if err != nil {
		return err
	}
	if c.cur.CompareAndSwap(old, s) {
		c.changed()
	}
	return nil
}

// refreshIndex takes a change of the image index alone, which the daemon
// itself makes every few seconds (the served versions it records), without
// a reload: it reads the index, and if it resolves every {{image}} as
// before (image.Index.Fingerprint), serves on with it, loading and
// trial-rendering nothing and announcing no change, so the kernel keeps
// its caches. It reports whether it took the change; otherwise the caller
// reloads. now is every watched file's stamp now.
func (c *Catalog) refreshIndex(old *snapshot, now map[string]stamp) bool {
	if old.images == nil {
		return false
	}
	for p, st := range old.stamps {
		if p != old.imagesIndex && now[p] != st {
			return false
		}
	}
	s := *old
	s.stamps = maps.Clone(old.stamps) // loadImages stamps the index anew
	if err := loadImages(old.cfg, &s); err != nil || s.images.Fingerprint() != old.images.Fingerprint() {
		return false
	}
	return c.cur.CompareAndSwap(old, &s)
}

// Changed reports whether a watched file changed since the last load.
func (c *Catalog) Changed() bool {
	cur := c.cur.Load().stamps
	return !maps.Equal(stampsOf(cur), cur)
}

// stampsOf stats every file named in old, once.
func stampsOf(old map[string]stamp) map[string]stamp {
	now := make(map[string]stamp, len(old))
	for p := range old {
		now[p] = stampOf(p)
	}
	return now
}

// Watch polls the template and ethers files every interval and reloads
// when one changed, until ctx ends. Polling a stat is cheap and, unlike
// inotify, also follows editors that replace files by rename and files on
// NFS.
func (c *Catalog) Watch(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var failedStamps map[string]stamp
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		old := c.cur.Load()
		now := stampsOf(old.stamps)
		if maps.Equal(now, old.stamps) || c.refreshIndex(old, now) {
			continue
		}
		// Log a broken file once, not every tick, until it changes again.
		if failedStamps != nil && maps.Equal(now, failedStamps) {
			continue
		}
		if err := c.Reload(); err != nil {
			failedStamps = now
			c.log.Error("reload failed; still serving the previous template and ethers", "loader", c.ld.Name, "err", err)
			continue
		}
		failedStamps = nil
		c.log.Info("reloaded template and ethers after a change", "loader", c.ld.Name)
	}
}

// Nodes lists provisioned nodes (none in config-only mode).
func (c *Catalog) Nodes() []node.Node {
	if c.opts.Prov == nil {
		return nil
	}
	return c.opts.Prov.Nodes()
}

// FullMode reports whether nodes get roots.
func (c *Catalog) FullMode() bool { return c.opts.Prov != nil }

// NodeDir is the exported root path of a node ("" in config-only mode).
func (c *Catalog) NodeDir(id node.ID) string {
	if c.opts.Prov == nil {
		return ""
	}
	return c.opts.Prov.Peek(id).Dir
}
