// Package catalog decides what each name under pxelinux.cfg is and what it
// holds: a node's config rendered from the template, an admin's static file,
// or nothing. It is the policy behind the FUSE filesystem and behind
// `pxebootfs render`, so both always agree byte for byte.
//
// # Names
//
// A node name (8 hex digits, or 01-<mac> for a MAC known from ethers) is
// always generated, never taken from static_dir, and is served only when the
// node's address passes the allow list. Every other name is looked up in
// static_dir after strict validation. Everything else is "not found", so
// pxelinux falls through its search order as it would on a plain tftpd.
//
// # Inventory and content generator
//
// An inventory (inventory.go) adds MACs served like ethers entries, a host
// name, variables and a template of its own to individual nodes, and can
// exempt a node from provisioning. A content generator (generated.go) is
// asked for the names nothing above serves, and with generator_for_nodes
// for node names first; its output is served as KindGenerated.
//
// # Reloading
//
// The template, the ethers table and the allow list live in an immutable
// snapshot swapped atomically; a reload that fails keeps the old snapshot.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/ethers"
	"github.com/pxebootfs/pxebootfs/internal/generator"
	"github.com/pxebootfs/pxebootfs/internal/image"
	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/inventory"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/pxename"
	"github.com/pxebootfs/pxebootfs/internal/registry"
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
	// KindNode is a node's config, rendered from the template.
	KindNode Kind = iota + 1
	// KindStatic is a regular file in static_dir, served as it is.
	KindStatic
	// KindGenerated is the content_generator program's output.
	KindGenerated
	// KindBuiltin is a file pxebootfs ships (GRUB's grub.cfg).
	KindBuiltin
)

// Inode tags keep the inode spaces of different kinds disjoint; the low bits
// carry the identity (IPv4, MAC, name hash) so a name always gets the same
// inode number and concurrent lookups of one name merge in the kernel.
const (
	tagIP     = uint64(1) << 56
	tagMAC    = uint64(2) << 56
	tagStatic = uint64(3) << 56
	tagLink   = uint64(4) << 56
	tagGen    = uint64(5) << 56
	lowMask   = uint64(1)<<56 - 1
)

// Entry is a resolved name.
type Entry struct {
	Name   string
	Kind   Kind
	Ino    uint64
	Node   node.Node         // KindNode; KindGenerated: whatever the name told (MAC only for an unknown 01-<mac>)
	Static string            // KindStatic: absolute path in static_dir
	Inv    *inventory.Host   // KindNode, KindGenerated: the node's inventory record, nil if none
	Gen    *generator.Result // KindGenerated: the program's output
	// Builtin: KindBuiltin's content.
	Builtin []byte
}

// snapshot is everything a reload replaces, immutable once published.
type snapshot struct {
	cfg       *config.Config // what it was loaded from; SetConfig replaces it
	tmplPath  string         // the template's file: pxe_template or grub_template
	tmpl      *render.Template
	ethers    *ethers.Table
	allow     *pxename.Allow
	staticDir string
	stamps    map[string]stamp     // files watched for changes
	inv       *inventory.Inventory // nil without an inventory
	images    *image.Index         // nil without tftp_root
	imagesRel string               // images_dir relative to tftp_root
	// installTmpl is install_template (nil when unset); localTmpl is
	// local_template or the built-in one (never nil). The GRUB catalog
	// holds their GRUB twins.
	installTmpl, localTmpl *render.Template
}

type stamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

// Catalog resolves and renders names. Safe for concurrent use.
type Catalog struct {
	cfg  *config.Config
	prov node.Provisioner // nil in config-only mode
	log  *slog.Logger
	cur  atomic.Pointer[snapshot]
	gen  *contentGen // nil without content_generator

	subMu sync.Mutex
	subs  []func() // OnChange

	servedMu sync.Mutex
	served   map[string]string // image versions named by configs served since TakeServed

	// grub: this catalog serves GRUB's prefix directory (NewGRUB).
	grub bool
	// inst: install mode (SetInstaller); nil when off.
	inst Installer
}

// New loads the template and ethers named by cfg. prov may be nil
// (config-only mode).
func New(cfg *config.Config, prov node.Provisioner, log *slog.Logger) (*Catalog, error) {
	return newCatalog(cfg, prov, log, false)
}

// NewGRUB is the catalog of GRUB's prefix directory (grub_mount): names
// grub.cfg-<node> rendered from grub_template, grub_static_dir served with
// its subdirectories, and a built-in grub.cfg. It shares prov with the
// pxelinux catalog, so a node keeps one root whichever loader asks.
func NewGRUB(cfg *config.Config, prov node.Provisioner, log *slog.Logger) (*Catalog, error) {
	return newCatalog(cfg, prov, log, true)
}

func newCatalog(cfg *config.Config, prov node.Provisioner, log *slog.Logger, grub bool) (*Catalog, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{cfg: cfg, prov: prov, log: log, grub: grub}
	gen, err := newContentGen(cfg, log)
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

func (c *Catalog) load(cfg *config.Config) (*snapshot, error) {
	tmplKey, tmplPath, static := "pxe_template", cfg.PXETemplate, cfg.StaticDir
	if c.grub {
		tmplKey, tmplPath, static = "grub_template", cfg.GrubTemplate, cfg.GrubStaticDir
	}
	s := &snapshot{
		cfg:       cfg,
		tmplPath:  tmplPath,
		allow:     pxename.NewAllow(cfg.Allow),
		staticDir: static,
		stamps:    map[string]stamp{},
	}
	// Stamp before reading, so a change that lands while we read is seen
	// again by the next poll rather than lost.
	for _, p := range []string{tmplPath, cfg.Ethers} {
		if p != "" {
			s.stamps[p] = stampOf(p)
		}
	}
	t, err := render.Load(tmplPath)
	if err != nil {
		return nil, fmt.Errorf("config %s: %s: %w", cfg.File, tmplKey, err)
	}
	s.tmpl = t
	if err := c.loadInstallTemplates(cfg, s); err != nil {
		return nil, err
	}
	if cfg.Ethers != "" {
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
	return s, nil
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

// Reload re-reads the template and ethers. On error the old snapshot keeps
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
		cur := c.cur.Load().stamps
		now := stampsOf(cur)
		if maps.Equal(now, cur) {
			continue
		}
		// Log a broken file once, not every tick, until it changes again.
		if failedStamps != nil && maps.Equal(now, failedStamps) {
			continue
		}
		if err := c.Reload(); err != nil {
			failedStamps = now
			c.log.Error("reload failed; still serving the previous template and ethers", "err", err)
			continue
		}
		failedStamps = nil
		c.log.Info("reloaded template and ethers after a change")
	}
}

// Resolve decides what name is. The name is parsed once, here; what it
// was classified as travels on to every later rule. ctx bounds a content
// generator run (the caller's LOOKUP or GETATTR may be interrupted). Errors
// wrap ErrNotServed for names we do not serve.
func (c *Catalog) Resolve(ctx context.Context, name string) (Entry, error) {
	s := c.cur.Load()
	pn, _ := c.parse(name) // zero Kind: not a node name
	e, err := c.resolve(s, name, pn)
	if err != nil && c.grub && name == "grub.cfg" {
		// No grub.cfg of the admin's: the built-in one.
		return Entry{Name: name, Kind: KindBuiltin, Ino: tagStatic | hashName(name), Builtin: builtinGrubCfg}, nil
	}
	return c.extend(ctx, s, name, pn, e, err)
}

// resolve applies the template, ethers and static_dir rules to name, which
// pxename classified as pn.
func (c *Catalog) resolve(s *snapshot, name string, pn pxename.Name) (Entry, error) {
	switch pn.Kind {
	case pxename.KindIP:
		if !s.allow.Allowed(pn.ID.Addr()) {
			return Entry{}, notServedf(name, "%s is outside allow", pn.ID.Addr())
		}
		return Entry{
			Name: name, Kind: KindNode, Ino: nodeIno(name, pn.ID),
			Node: node.Node{ID: pn.ID, MAC: s.firstMAC(pn.ID)},
		}, nil
	case pxename.KindMAC:
		if id, ok := s.lookupMAC(pn.MAC); ok {
			if !s.allow.Allowed(id.Addr()) {
				return Entry{}, notServedf(name, "%s (from ethers) is outside allow", id.Addr())
			}
			return Entry{
				Name: name, Kind: KindNode, Ino: tagMAC | macBits(pn.MAC),
				Node: node.Node{ID: id, MAC: pxename.ColonMAC(pn.MAC)},
			}, nil
		}
		// An unknown MAC may still have a hand-written file.
	}
	if err := pxename.CheckStatic(name); err != nil {
		return Entry{}, notServedf(name, "%v", err)
	}
	if s.staticDir == "" {
		return Entry{}, notServedf(name, "no node or static file of that name")
	}
	p := filepath.Join(s.staticDir, name)
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		// Symlinks are not followed: they could point anywhere on the server.
		return Entry{}, notServedf(name, "no node or static file of that name")
	}
	return Entry{Name: name, Kind: KindStatic, Ino: tagStatic | hashName(name), Static: p}, nil
}

// nodeIno is the inode number of a hex-IP name of id as spelled in name.
func nodeIno(name string, id node.ID) uint64 {
	return tagIP | caseBits(name)<<32 | uint64(id.Uint32())
}

// LinkIno is the inode number of a node's by-ip symlink.
func LinkIno(id node.ID) uint64 { return tagLink | uint64(id.Uint32()) }

// caseBits records which hex digits of a hex-IP name are lower-case. The
// kernel keys inodes by number, and the template sees .Name: C0A80102 and
// c0a80102 must be distinct inodes, or one would be served the other's name.
func caseBits(name string) uint64 {
	var v uint64
	for i := 0; i < len(name); i++ {
		if name[i] >= 'a' && name[i] <= 'f' {
			v |= 1 << i
		}
	}
	return v
}

func macBits(m net.HardwareAddr) uint64 {
	var v uint64
	for _, b := range m {
		v = v<<8 | uint64(b)
	}
	return v & lowMask
}

func hashName(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64() & lowMask
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
		var root node.Root
		if c.prov != nil && e.provisioned() {
			root = c.prov.Peek(e.Node.ID)
		}
		return c.renderNode(e, root, c.installView(e))
	case KindStatic:
		return readStatic(e)
	case KindGenerated:
		return e.Gen.Data, nil
	case KindBuiltin:
		return e.Builtin, nil
	}
	return nil, fmt.Errorf("render %q: unknown kind %d", e.Name, e.Kind)
}

func (c *Catalog) renderNode(e Entry, root node.Root, v install.View) ([]byte, error) {
	b, _, _, err := c.renderNodeImages(e, root, v)
	return b, err
}

// renderNodeImages renders e and also returns the image versions the
// config names (image name -> version). Every {{image}} of one render
// resolves against one snapshot of the image index, so a config names one
// version of each image: the kernel and initrd a node fetches next always
// match. installing tells whether the install template was used.
func (c *Catalog) renderNodeImages(e Entry, root node.Root, v install.View) (b []byte, used map[string]string, installing bool, err error) {
	s := c.cur.Load()
	d := data(e, root, v)
	if s.images != nil {
		d.SetImages(func(name, file string) (string, error) {
			p, err := s.images.Path(s.imagesRel, name, file)
			if err == nil {
				if used == nil {
					used = map[string]string{}
				}
				used[name] = s.images.Images[name].Current
			}
			return p, err
		})
	}
	t := c.installTemplate(s, e, v)
	installing = t != nil && v.State != registry.InstallDone
	if t == nil {
		t = c.templateFor(e)
	}
	b, err = t.Render(d)
	if err != nil {
		return nil, nil, false, fmt.Errorf("render %s for node %s: %w", e.Name, e.Node.ID, err)
	}
	return b, used, installing, nil
}

// Stat is what stat reports for a served file.
type Stat struct {
	Size  int64 // exactly len(Render(e)), so tftpd's tsize is right
	Mtime time.Time
	// Stable: the content changes only with a change announced to
	// OnChange callbacks (a node's config, its root known). Static files
	// (edited in place by admins, unwatched), generated content and
	// the config of a node not yet registered (its fsid is not yet its
	// own) are not stable.
	Stable bool
}

// Stat sizes e. A node's mtime is the template's, so tools that compare
// times see a change when the template changes.
func (c *Catalog) Stat(e Entry) (Stat, error) {
	switch e.Kind {
	case KindGenerated:
		return Stat{Size: int64(len(e.Gen.Data)), Mtime: e.Gen.Time}, nil
	case KindBuiltin:
		return Stat{Size: int64(len(e.Builtin)), Stable: true}, nil
	}
	if e.Kind == KindStatic {
		fi, err := os.Stat(e.Static)
		if err != nil {
			return Stat{}, err
		}
		return Stat{Size: fi.Size(), Mtime: fi.ModTime()}, nil
	}
	root, stable := node.Root{}, true
	if c.prov != nil && e.provisioned() {
		root = c.prov.Peek(e.Node.ID)
		stable = root.Known
	}
	v := c.installView(e)
	if v.State != registry.InstallNone && v.Token == "" {
		stable = false // its first open makes its token
	}
	b, err := c.renderNode(e, root, v)
	if err != nil {
		return Stat{}, err
	}
	s := c.cur.Load()
	return Stat{Size: int64(len(b)), Mtime: s.stamps[s.tmplPath].mtime, Stable: stable}, nil
}

// maxStatic bounds what one open of a static file holds in memory. pxelinux
// configs and menus are kilobytes; kernels and initrds belong beside
// pxelinux.cfg, not inside it.
const maxStatic = 64 << 20

func readStatic(e Entry) ([]byte, error) {
	f, err := os.Open(e.Static)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("static %s: not a regular file: %w", e.Static, ErrNotServed)
	}
	if fi.Size() > maxStatic {
		return nil, fmt.Errorf("static %s: %d bytes is larger than %d", e.Static, fi.Size(), maxStatic)
	}
	b := make([]byte, fi.Size())
	n, err := io.ReadFull(f, b)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// Shrunk while we read: serve what is there, stat catches up next time.
		err = nil
	}
	return b[:n], err
}

// Open returns the content to serve to one open of e. For a node in full
// mode it first provisions the node's root, so a node never gets a config
// pointing at a root that is not there yet. One log line per served file.
func (c *Catalog) Open(ctx context.Context, e Entry) ([]byte, error) {
	start := time.Now()
	var b []byte
	var err error
	switch e.Kind {
	case KindNode:
		var v install.View
		v, err = c.openInstall(e)
		var root node.Root
		if err == nil && c.prov != nil && e.provisioned() {
			root, err = c.prov.Ensure(ctx, e.Node)
		}
		var used map[string]string
		var installing bool
		if err == nil {
			b, used, installing, err = c.renderNodeImages(e, root, v)
		}
		if err == nil {
			c.noteServed(used)
			if installing {
				c.inst.Served(e.Node.ID)
			}
		}
	case KindGenerated:
		b, err = c.openGenerated(ctx, e)
	default:
		b, err = c.Render(e)
	}
	attrs := []any{"name", e.Name, "bytes", len(b), "duration", time.Since(start)}
	if e.Kind == KindNode {
		attrs = append(attrs, "node", e.Node.ID, "ip", e.Node.ID.Addr())
	}
	if err != nil {
		c.log.Error("serve", append(attrs, "result", "error", "err", err)...)
		return nil, err
	}
	c.log.Info("serve", append(attrs, "result", "ok")...)
	return b, nil
}

// DirEntry is one name of a directory listing.
type DirEntry struct {
	Name string
	Ino  uint64
	Dir  bool // a subdirectory (GRUB's static tree); Ino 0: the filesystem picks one
}

// List is what ls of the mount shows: provisioned nodes by hex name (those
// allow still serves) and static_dir's files, sorted by name. Nothing is
// resolved, rendered or generated for it: listing a mount of 10,000 nodes
// runs no template and no content generator.
func (c *Catalog) List() []DirEntry {
	s := c.cur.Load()
	var out []DirEntry
	seen := map[string]bool{}
	prefix := ""
	if c.grub {
		prefix = pxename.GRUBPrefix
	}
	for _, n := range c.Nodes() {
		if name := prefix + n.ID.String(); s.allow.Allowed(n.ID.Addr()) {
			out = append(out, DirEntry{Name: name, Ino: nodeIno(name, n.ID)})
			seen[name] = true
		}
	}
	files, dirs := c.staticEntries(s)
	for _, name := range files {
		if !seen[name] {
			out = append(out, DirEntry{Name: name, Ino: tagStatic | hashName(name)})
			seen[name] = true
		}
	}
	for _, name := range dirs {
		out = append(out, DirEntry{Name: name, Dir: true})
	}
	if c.grub && !seen["grub.cfg"] {
		out = append(out, DirEntry{Name: "grub.cfg", Ino: tagStatic | hashName("grub.cfg")})
	}
	slices.SortFunc(out, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// StaticNames lists static_dir's regular files that we would serve, sorted.
func (c *Catalog) StaticNames() []string { return c.staticNames(c.cur.Load()) }

// staticNames lists static_dir's regular files that we would serve: valid
// names not shadowed by a node name.
func (c *Catalog) staticNames(s *snapshot) []string {
	names, _ := c.staticEntries(s)
	return names
}

// staticEntries lists the static directory once: the regular files served
// (names a node name shadows left out) and, for the GRUB catalog, the
// subdirectories served as they are.
func (c *Catalog) staticEntries(s *snapshot) (files, dirs []string) {
	if s.staticDir == "" {
		return nil, nil
	}
	des, err := os.ReadDir(s.staticDir)
	if err != nil {
		c.log.Warn("list static_dir", "dir", s.staticDir, "err", err)
		return nil, nil
	}
	for _, de := range des {
		if pxename.CheckStatic(de.Name()) != nil {
			continue
		}
		if de.IsDir() {
			if c.grub {
				dirs = append(dirs, de.Name())
			}
			continue
		}
		if !de.Type().IsRegular() {
			continue
		}
		if pn, err := c.parse(de.Name()); err == nil {
			if e, err := c.resolve(s, de.Name(), pn); err != nil || e.Kind != KindStatic {
				continue // shadowed by a node name
			}
		}
		files = append(files, de.Name())
	}
	return files, dirs
}

// parse classifies a name by this catalog's loader's rules.
func (c *Catalog) parse(name string) (pxename.Name, error) {
	if c.grub {
		return pxename.ParseGRUB(name)
	}
	return pxename.Parse(name)
}

// Nodes lists provisioned nodes (none in config-only mode).
func (c *Catalog) Nodes() []node.Node {
	if c.prov == nil {
		return nil
	}
	return c.prov.Nodes()
}

// FullMode reports whether nodes get roots.
func (c *Catalog) FullMode() bool { return c.prov != nil }

// NodeDir is the exported root path of a node ("" in config-only mode).
func (c *Catalog) NodeDir(id node.ID) string {
	if c.prov == nil {
		return ""
	}
	return c.prov.Peek(id).Dir
}
