package overlay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// Type selects the copy-on-write filesystem.
type Type string

const (
	// Overlayfs is the kernel's overlay filesystem, the default.
	Overlayfs Type = "overlayfs"
	// AUFS is the out-of-tree aufs, for kernels that carry it.
	AUFS Type = "aufs"
)

// Options configures a Manager. RootDir, NodeDir and OverlayDir must exist;
// they are resolved to absolute paths without symlinks, because the mount
// table lists resolved paths.
type Options struct {
	// Type is the backend; empty means Overlayfs.
	Type Type
	// RootDir is the golden root, the shared read-only lower layer of
	// Mount; "" when every mount names its own (MountOver).
	RootDir string
	// NodeDir holds the mount points, one per node.
	NodeDir string
	// OverlayDir holds each node's upper and work directories.
	OverlayDir string
	// Extra are further mount options, one per element, appended after
	// the ones the backend needs.
	Extra []string
}

// Paths are the directories of one node's overlay.
type Paths struct {
	Mount string // NodeDir/NODE
	Upper string // OverlayDir/NODE/upper
	Work  string // OverlayDir/NODE/work
	Lower string // RootDir
}

// Manager mounts, adopts and unmounts the node overlays of one golden root.
type Manager struct {
	typ        Type
	rootDir    string
	nodeDir    string
	overlayDir string
	extra      []string

	// locks holds one *sync.Mutex per node, so that two callers
	// cannot both find a node unmounted and stack two overlays.
	locks sync.Map
	// verified: a mount of this Manager was found in the mount table
	// with the options asked for (see Mount).
	verified atomic.Bool
}

// Directory modes. The work directory holds overlayfs's private state and
// index, which nobody else has any business reading.
const (
	mountDirMode = 0o755
	nodeDirMode  = 0o755
	upperDirMode = 0o755
	workDirMode  = 0o700
)

// procFilesystems lists the filesystem types the running kernel knows.
const procFilesystems = "/proc/filesystems"

// New validates o and returns a Manager for it. For AUFS it also checks that
// the running kernel has aufs.
func New(o Options) (*Manager, error) { return newManager(o, false) }

// Check proves, for `pxebootfs check`, that node overlays of o can work
// here (see Manager.Check). NodeDir and OverlayDir may not exist yet
// (`pxebootfs mount` creates them): they are then checked as they will
// be, below their nearest existing parent. It creates nothing that
// outlives it.
func Check(o Options) error {
	m, err := newManager(o, true)
	if err != nil {
		return err
	}
	return m.Check()
}

// newManager is New; with notYet, NodeDir and OverlayDir may be missing.
func newManager(o Options, notYet bool) (*Manager, error) {
	m := &Manager{typ: o.Type, extra: append([]string(nil), o.Extra...)}
	if m.typ == "" {
		m.typ = Overlayfs
	}
	switch m.typ {
	case Overlayfs:
	case AUFS:
		ok, err := kernelHasFS("aufs")
		if err != nil {
			return nil, fmt.Errorf("overlay: check for aufs: %w", err)
		}
		if !ok {
			return nil, errors.New("overlay: aufs is not supported by this kernel (not in /proc/filesystems)")
		}
	default:
		return nil, fmt.Errorf("overlay: unknown type %q (want %q or %q)", o.Type, Overlayfs, AUFS)
	}

	dirs := []struct {
		what    string
		in      string
		out     *string
		missing bool // may not exist yet
	}{
		{"root dir", o.RootDir, &m.rootDir, false},
		{"node dir", o.NodeDir, &m.nodeDir, notYet},
		{"overlay dir", o.OverlayDir, &m.overlayDir, notYet},
	}
	for _, d := range dirs {
		if d.in == "" && d.out == &m.rootDir {
			// Only named roots: every mount names its lower.
			continue
		}
		p, err := resolveDir(d.what, d.in, d.missing)
		if err != nil {
			return nil, fmt.Errorf("overlay: %w", err)
		}
		*d.out = p
	}
	// The kernel refuses overlapping layers, and a mount point inside the
	// golden root or an upper dir would show up inside every node's root.
	for i, a := range dirs {
		for _, b := range dirs[i+1:] {
			if *a.out == "" || *b.out == "" {
				continue
			}
			if within(*a.out, *b.out) || within(*b.out, *a.out) {
				return nil, fmt.Errorf("overlay: %s %s and %s %s overlap; they must be separate trees", a.what, *a.out, b.what, *b.out)
			}
		}
	}
	if err := checkExtra(m.typ, m.extra); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	return m, nil
}

// resolveDir makes p absolute and symlink-free, and checks that it is a
// directory whose name fits into mount options.
func resolveDir(what, p string, missing bool) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%s is not set", what)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", what, p, err)
	}
	// Check the name as given first, so a ',' is reported as such rather
	// than as whatever resolving it runs into.
	if err := checkOptionPath(what, abs); err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if missing && errors.Is(err, fs.ErrNotExist) && filepath.Dir(abs) != abs {
		// Not there yet: resolve the parent it will be created in.
		parent, err := resolveDir(what, filepath.Dir(abs), true)
		if err != nil {
			return "", err
		}
		return filepath.Join(parent, filepath.Base(abs)), nil
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if err := checkOptionPath(what+" (resolved)", real); err != nil {
		return "", err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s %s is not a directory", what, real)
	}
	return real, nil
}

// within reports whether p is dir or inside it; both are clean and absolute.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/") || dir == "/"
}

// kernelHasFS reports whether /proc/filesystems lists fstype.
func kernelHasFS(fstype string) (bool, error) {
	data, err := os.ReadFile(procFilesystems)
	if err != nil {
		return false, err
	}
	return listsFS(data, fstype), nil
}

// listsFS reports whether the /proc/filesystems text data lists fstype. Each
// line is an optional "nodev" and the type name, separated by a tab.
func listsFS(data []byte, fstype string) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[len(f)-1] == fstype {
			return true
		}
	}
	return false
}

// Paths returns the directories of node's overlay. It creates nothing.
func (m *Manager) Paths(id node.ID) (Paths, error) {
	if !id.IsValid() {
		return Paths{}, errors.New("overlay paths: no node given")
	}
	// A node's String is 8 characters of [0-9A-F]: a safe path component.
	node := id.String()
	return Paths{
		Mount: filepath.Join(m.nodeDir, node),
		Upper: filepath.Join(m.overlayDir, node, "upper"),
		Work:  filepath.Join(m.overlayDir, node, "work"),
		Lower: m.rootDir,
	}, nil
}

// lock serialises operations on one node and returns the unlock function.
func (m *Manager) lock(id node.ID) func() {
	mu, _ := m.locks.LoadOrStore(id, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}

// mkdirChain creates base/names[0]/names[1]/... with the given modes,
// keeping what exists. Every component must end up a real directory, not a
// symlink or anything else, so the result cannot lead outside base; base
// itself was resolved by New.
func mkdirChain(base string, names []string, modes []fs.FileMode) error {
	if fi, err := os.Lstat(base); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%s is no longer a directory (%s)", base, fi.Mode().Type())
	}
	dir := base
	for i, name := range names {
		dir = filepath.Join(dir, name)
		err := os.Mkdir(dir, modes[i])
		created := err == nil
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		fi, err := os.Lstat(dir)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory but %s; refusing to use it", dir, describeType(fi.Mode()))
		}
		if created {
			// Mkdir's mode is masked by the umask; the overlay's root
			// directory takes its mode from upper.
			if err := os.Chmod(dir, modes[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func describeType(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsRegular():
		return "a regular file"
	default:
		return "of type " + m.Type().String()
	}
}

// makeDirs creates node's mount point, upper and work directories.
func (m *Manager) makeDirs(id node.ID) error {
	node := id.String()
	if err := mkdirChain(m.nodeDir, []string{node}, []fs.FileMode{mountDirMode}); err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	if err := mkdirChain(m.overlayDir, []string{node, "upper"}, []fs.FileMode{nodeDirMode, upperDirMode}); err != nil {
		return fmt.Errorf("create upper dir: %w", err)
	}
	if err := mkdirChain(m.overlayDir, []string{node, "work"}, []fs.FileMode{nodeDirMode, workDirMode}); err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	return nil
}
