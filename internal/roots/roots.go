// Package roots keeps the golden roots nodes boot into as named roots with
// immutable generations, the way package image keeps boot images: each
// import is a new generation, roots_dir/NAME/GEN/, made complete in a
// private staging directory on the same filesystem and moved into place in
// one rename; a root's current generation is switched by an atomic rewrite
// of an index in state_dir (state_dir/roots.json, changed only under an
// exclusive flock of state_dir/roots.lock).
//
// A generation is never written again after it is made. That is enforced,
// not hoped for: every generation is a read-only bind mount of itself, so
// even root's `touch` or `apt` inside it fails with EROFS (`findmnt
// roots_dir/NAME/GEN` shows it, with "ro" among its options). The immutable
// attribute would not do: a write through an overlay to a file whose lower
// copy is immutable fails with EPERM (measured on Linux 6.18), so a node
// could not change a file of its own root. Bind mounts do not outlive a
// reboot; the daemon makes them again at start, before it mounts any node
// over a generation.
//
// A node's overlay is pinned to the generation it was made over (its record
// in the registry says which): its upper layer records that lower's origin
// (index=on), so it must never be mounted over another. A node moves to its
// root's current generation only when its layer is made fresh.
package roots

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/atomicfile"
	"github.com/pxebootfs/pxebootfs/internal/safename"
)

// File names in state_dir and roots_dir.
const (
	IndexName  = "roots.json"
	lockName   = "roots.lock"
	stagingDir = ".staging" // in roots_dir, so the final rename stays on one filesystem
)

// Legacy is the name of the root an existing config's root_dir becomes: one
// generation, LegacyGen, which is the directory as it is — never copied,
// sealed or pruned. A node whose record names no root is pinned to it, so
// upgrading pxebootfs changes nothing for nodes made over root_dir.
const (
	Legacy    = "root_dir"
	LegacyGen = "dir"
)

// genLen is how many hex digits of the content hash name a generation.
const genLen = 12

// ErrNotFound is wrapped by errors for an unknown root or generation.
var ErrNotFound = errors.New("not found")

// ErrPinned is wrapped when removing a generation nodes are pinned to.
var ErrPinned = errors.New("nodes are pinned to it")

// CheckName checks a root name: package safename's rule, and not Legacy.
func CheckName(s string) error {
	if s == Legacy {
		return fmt.Errorf("root %q: the name is the config's root_dir", s)
	}
	return safename.Check("root", s)
}

// CheckGen checks a generation as given on the command line.
func CheckGen(g string) error {
	if len(g) != genLen {
		return fmt.Errorf("generation %q: want %d hex digits", g, genLen)
	}
	for i := 0; i < len(g); i++ {
		if !(g[i] >= '0' && g[i] <= '9' || g[i] >= 'a' && g[i] <= 'f') {
			return fmt.Errorf("generation %q: want %d lower-case hex digits", g, genLen)
		}
	}
	return nil
}

// Index is everything known about roots, as kept in state_dir.
type Index struct {
	Roots map[string]*Root `json:"roots"`
}

// Root is one named root.
type Root struct {
	Current     string                 `json:"current"`
	Generations map[string]*Generation `json:"generations"`
}

// Generation is one imported generation of a root.
type Generation struct {
	Imported time.Time `json:"imported"`
	Source   string    `json:"source"` // what it was imported from, for the admin
	Size     int64     `json:"size"`   // bytes of regular files
	Files    int       `json:"files"`  // entries of the tree
	// Replaced is when it stopped being current (zero while it is, or
	// never was replaced).
	Replaced time.Time `json:"replaced,omitzero"`
	// Kernel and Initrd are the generation's boot/vmlinuz-VERSION and
	// boot/initrd.img-VERSION, relative to the generation; "" if it has
	// none. Image names the image version made of them.
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	// Image is where a generation imported from a container image came
	// from; nil for a directory or a tar.
	Image *Origin `json:"image,omitempty"`
	// Boot is the boot image made of Kernel and Initrd at import, so that
	// a node is served the kernel of the generation it is pinned to.
	Boot BootImage `json:"boot,omitzero"`
}

// BootImage is the boot image version (package image) made of a
// generation's kernel and initrd: paths relative to tftp_root.
type BootImage struct {
	Version string `json:"version,omitempty"` // of the image named like the root
	Kernel  string `json:"kernel,omitempty"`
	Initrd  string `json:"initrd,omitempty"`
}

// Pin names one generation of one root: what a node's upper layer was made
// over. The zero Pin is the legacy root_dir.
type Pin struct {
	Root string `json:"root,omitempty"`
	Gen  string `json:"root_generation,omitempty"`
}

// IsLegacy reports whether p is the config's root_dir.
func (p Pin) IsLegacy() bool { return p.Root == "" || p.Root == Legacy }

func (p Pin) String() string {
	if p.IsLegacy() {
		return Legacy
	}
	return p.Root + "/" + p.Gen
}

// Store is the roots of one roots_dir and state_dir, and the legacy
// root_dir if the config has one.
type Store struct {
	dir      string // roots_dir; "" when only root_dir is configured
	stateDir string
	legacy   string // root_dir; "" without one

	// cache is the index as last read (loadCached).
	cacheMu sync.Mutex
	cacheID fileID
	cache   *Index
}

// fileID tells a rewritten index (replaced by rename: a new inode) from
// the one read before.
type fileID struct {
	ino   uint64
	mtime int64
	size  int64
}

// New returns the store of roots_dir dir (may be ""), indexed in stateDir,
// with legacy as the root_dir root (may be "").
func New(dir, stateDir, legacy string) *Store {
	return &Store{dir: dir, stateDir: stateDir, legacy: legacy}
}

// Dir is roots_dir.
func (s *Store) Dir() string { return s.dir }

// IndexPath is where the index lives.
func (s *Store) IndexPath() string { return filepath.Join(s.stateDir, IndexName) }

// LoadIndex reads the index at path; a missing file is an empty index.
func LoadIndex(path string) (*Index, error) {
	ix := &Index{Roots: map[string]*Root{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ix, nil
	}
	if err != nil {
		return nil, fmt.Errorf("root index: %w", err)
	}
	if err := json.Unmarshal(data, ix); err != nil {
		return nil, fmt.Errorf("root index %s: %w", path, err)
	}
	if ix.Roots == nil {
		ix.Roots = map[string]*Root{}
	}
	for name, r := range ix.Roots {
		if r == nil || r.Generations == nil {
			return nil, fmt.Errorf("root index %s: root %q has no generations", path, name)
		}
	}
	return ix, nil
}

// Load reads the store's index, without the lock: the file is always
// replaced whole.
func (s *Store) Load() (*Index, error) { return LoadIndex(s.IndexPath()) }

// Boot is the boot image of pinned generation p (zero for root_dir and for
// a generation without a kernel). It reads the index only when it changed.
func (s *Store) Boot(p Pin) BootImage {
	if p.IsLegacy() || s.dir == "" {
		return BootImage{}
	}
	ix, err := s.loadCached()
	if err != nil {
		return BootImage{}
	}
	if r := ix.Roots[p.Root]; r != nil {
		if g := r.Generations[p.Gen]; g != nil {
			return g.Boot
		}
	}
	return BootImage{}
}

// loadCached is the index, read again only when the file changed (it is
// always replaced by rename, so a new inode): Boot runs for every served
// config of a node, and Current for every lookup of a node not yet made.
func (s *Store) loadCached() (*Index, error) {
	var st unix.Stat_t
	if err := unix.Stat(s.IndexPath(), &st); err != nil {
		// Missing: an empty index; anything else: Load says what.
		return s.Load()
	}
	id := fileID{ino: st.Ino, mtime: st.Mtim.Nano(), size: st.Size}
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if s.cache != nil && s.cacheID == id {
		return s.cache, nil
	}
	ix, err := s.Load()
	if err != nil {
		return nil, err
	}
	s.cache, s.cacheID = ix, id
	return ix, nil
}

// genDir is the directory of a generation.
func (s *Store) genDir(p Pin) string {
	if p.IsLegacy() {
		return s.legacy
	}
	return filepath.Join(s.dir, p.Root, p.Gen)
}

// Path is the directory of pinned generation p, which must exist: the
// lower layer of the nodes pinned to it. It is sealed (read-only) first,
// so that nothing mounts a node over a writable generation.
func (s *Store) Path(p Pin) (string, error) {
	dir, err := s.Locate(p)
	if err != nil || p.IsLegacy() {
		return dir, err
	}
	if err := seal(dir); err != nil {
		return "", fmt.Errorf("root %s: %w", p, err)
	}
	return dir, nil
}

// Locate is Path without sealing: where p is, if it exists.
func (s *Store) Locate(p Pin) (string, error) {
	if p.IsLegacy() {
		if s.legacy == "" {
			return "", fmt.Errorf("root %s: %w (the config has no root_dir)", Legacy, ErrNotFound)
		}
		return s.legacy, nil
	}
	if s.dir == "" {
		return "", fmt.Errorf("root %s: %w (the config has no roots_dir)", p, ErrNotFound)
	}
	if err := CheckName(p.Root); err != nil {
		return "", err
	}
	if err := CheckGen(p.Gen); err != nil {
		return "", err
	}
	dir := s.genDir(p)
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("root %s: generation %w (%s)", p, ErrNotFound, dir)
	}
	return dir, nil
}

// Current is the pin a fresh layer of root name gets: its current
// generation, or the legacy root for name "" or Legacy.
func (s *Store) Current(name string) (Pin, error) {
	if name == "" || name == Legacy {
		if s.legacy == "" {
			return Pin{}, fmt.Errorf("no root to give a node: set root (and roots_dir) or root_dir")
		}
		return Pin{}, nil
	}
	ix, err := s.loadCached()
	if err != nil {
		return Pin{}, err
	}
	r := ix.Roots[name]
	if r == nil || r.Current == "" {
		return Pin{}, fmt.Errorf("root %q: %w; import it with: pxebootfs root import %s SOURCE", name, ErrNotFound, name)
	}
	return Pin{Root: name, Gen: r.Current}, nil
}

// update changes the index under the exclusive lock, waiting for it.
func (s *Store) update(change func(ix *Index) error) error {
	return s.locked(unix.LOCK_EX, func() error {
		ix, err := s.Load()
		if err != nil {
			return err
		}
		if err := change(ix); err != nil {
			return err
		}
		return s.write(ix)
	})
}

// ErrBusy is returned by a non-blocking lock while another process holds it.
var ErrBusy = errors.New("another pxebootfs root command holds the lock")

// locked runs fn under the index lock (how: flock's LOCK_EX, with LOCK_NB
// to not wait).
func (s *Store) locked(how int, fn func() error) error {
	if err := os.MkdirAll(s.stateDir, 0o700); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	err := atomicfile.Locked(filepath.Join(s.stateDir, lockName), how, fn)
	if errors.Is(err, atomicfile.ErrLockBusy) {
		return ErrBusy
	}
	return err
}

func (s *Store) write(ix *Index) error {
	data, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.IndexPath(), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write root index: %w", err)
	}
	return nil
}

// Names are the root names in the index, sorted.
func (ix *Index) Names() []string {
	out := make([]string, 0, len(ix.Roots))
	for n := range ix.Roots {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// newestFirst lists r's generations by import time, newest first.
func newestFirst(r *Root) []string {
	out := make([]string, 0, len(r.Generations))
	for g := range r.Generations {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b string) int {
		if c := r.Generations[b].Imported.Compare(r.Generations[a].Imported); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return out
}
