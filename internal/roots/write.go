package roots

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/beneath"
)

// entry is one member of a tree being imported, from a directory walk or a
// tar archive: the tar header's fields, as both sources can fill them.
type entry struct {
	name   string // slash-separated, relative; "." is the tree's root
	typ    byte   // tar.TypeDir, TypeReg, TypeSymlink, TypeLink, TypeChar, TypeBlock, TypeFifo
	mode   int64  // permission bits with setuid, setgid and sticky
	uid    int
	gid    int
	mtime  time.Time
	link   string // a symlink's target, or a hard link's member name
	major  int64
	minor  int64
	xattrs map[string]string
	size   int64
	body   io.Reader // a regular file's content (exactly size bytes)
	// clone, if set, is the source file a regular file may be reflinked
	// from (FICLONE) instead of copied, where the filesystem can.
	clone *os.File
	// deferred: a hard link retried at the end (its target came later).
	deferred bool
}

// writer creates entries inside one staging directory. Every name is the
// source's, hostile until checked (a tar archive's above all): it must be
// relative and free of "..", and every directory on its way is opened with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so no member can write
// outside staging or through a symlink an earlier member made.
type writer struct {
	root string // the staging directory: the generation's root
	dirs []dirMeta
	// links are hard links whose target was not there yet: a flattened
	// image lists an upper layer's link before the lower layer's file.
	links []*entry
	// files and bytes count what was written, for progress.
	files atomic.Int64
	bytes atomic.Int64
	buf   []byte
}

// dirMeta is applied to a directory after everything inside it is written,
// so that a read-only directory can still be filled and its mtime stays.
type dirMeta struct {
	name  string
	mode  int64
	mtime time.Time
}

func newWriter(root string) *writer { return &writer{root: root, buf: make([]byte, 128<<10)} }

// cleanName checks a member name and returns it cleaned: "." for the root.
func cleanName(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimSuffix(n, "/")
	if n == "" || n == "." {
		return ".", nil
	}
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("member %q: absolute names are not allowed", name)
	}
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", fmt.Errorf("member %q: \"..\" is not allowed", name)
		}
	}
	if strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("member %q: NUL in name", name)
	}
	return path.Clean(n), nil
}

// parent opens name's parent directory inside root, creating missing
// directories (0755, root's) the way tar does for members listed before
// their directory.
func (w *writer) parent(name string) (int, string, error) {
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	fd, err := beneath.OpenFd(w.root, dir, unix.O_DIRECTORY|unix.O_PATH)
	if errors.Is(err, os.ErrNotExist) && dir != "." {
		if err := w.mkdirAll(dir); err != nil {
			return -1, "", err
		}
		fd, err = beneath.OpenFd(w.root, dir, unix.O_DIRECTORY|unix.O_PATH)
	}
	if err != nil {
		return -1, "", fmt.Errorf("member %q: its directory: %w", name, err)
	}
	return fd, base, nil
}

func (w *writer) mkdirAll(dir string) error {
	parts := strings.Split(dir, "/")
	for i := range parts {
		sub := strings.Join(parts[:i+1], "/")
		if fi, err := beneath.Stat(w.root, sub); err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("member %q: %s is not a directory", dir, sub)
			}
			continue
		}
		pfd, base, err := w.parent(sub)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(pfd, base, 0o755)
		unix.Close(pfd)
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("mkdir %s: %w", sub, err)
		}
	}
	return nil
}

// write creates e.
func (w *writer) write(e *entry) error {
	name, err := cleanName(e.name)
	if err != nil {
		return err
	}
	w.files.Add(1)
	if name == "." {
		if e.typ != tar.TypeDir {
			return fmt.Errorf("member %q: the tree's root must be a directory", e.name)
		}
		return w.meta(e, ".")
	}
	pfd, base, err := w.parent(name)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	// A later member replaces an earlier one of the same name, as tar
	// extracts; a directory stays (its entries are kept) if the new
	// member is one too.
	var st unix.Stat_t
	if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		switch {
		case isDir && e.typ == tar.TypeDir:
			return w.meta(e, name)
		case isDir:
			return fmt.Errorf("member %q: replaces a directory", e.name)
		default:
			if err := unix.Unlinkat(pfd, base, 0); err != nil {
				return fmt.Errorf("member %q: replace: %w", e.name, err)
			}
		}
	}
	switch e.typ {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("member %q: %w", e.name, err)
		}
		return w.meta(e, name)
	case tar.TypeReg, tar.TypeRegA:
		return w.file(pfd, base, e)
	case tar.TypeSymlink:
		if err := unix.Symlinkat(e.link, pfd, base); err != nil {
			return fmt.Errorf("member %q: %w", e.name, err)
		}
		if err := unix.Fchownat(pfd, base, e.uid, e.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("member %q: chown: %w", e.name, err)
		}
		return w.times(pfd, base, e)
	case tar.TypeLink:
		target, err := cleanName(e.link)
		if err != nil || target == "." {
			return fmt.Errorf("member %q: hard link to %q: not a member name", e.name, e.link)
		}
		tfd, err := beneath.OpenFd(w.root, target, unix.O_PATH)
		if errors.Is(err, os.ErrNotExist) && !e.deferred {
			e.deferred = true
			w.links = append(w.links, e)
			return nil
		}
		if err != nil {
			return fmt.Errorf("member %q: hard link to %q: %w", e.name, e.link, err)
		}
		defer unix.Close(tfd)
		var ts unix.Stat_t
		if err := unix.Fstat(tfd, &ts); err != nil || ts.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("member %q: hard link to %q: not a regular file", e.name, e.link)
		}
		if err := unix.Linkat(tfd, "", pfd, base, unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("member %q: hard link to %q: %w", e.name, e.link, err)
		}
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[e.typ]
		dev := unix.Mkdev(uint32(e.major), uint32(e.minor))
		if err := unix.Mknodat(pfd, base, kind|0o600, int(dev)); err != nil {
			return fmt.Errorf("member %q: mknod: %w", e.name, err)
		}
		if err := unix.Fchownat(pfd, base, e.uid, e.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("member %q: chown: %w", e.name, err)
		}
		if err := unix.Fchmodat(pfd, base, uint32(e.mode&0o7777), 0); err != nil {
			return fmt.Errorf("member %q: chmod: %w", e.name, err)
		}
		return w.times(pfd, base, e)
	default:
		return fmt.Errorf("member %q: type %q is not supported", e.name, e.typ)
	}
}

// file writes a regular file: a reflink of e.clone where the filesystem
// can, else a copy that leaves all-zero blocks as holes (sparse files stay
// sparse). Owner first, then mode (chown clears setuid), then xattrs
// (security.capability after chown, which clears it).
func (w *writer) file(pfd int, base string, e *entry) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("member %q: %w", e.name, err)
	}
	f := os.NewFile(uintptr(fd), e.name)
	defer f.Close()
	cloned := e.clone != nil && unix.IoctlFileClone(fd, int(e.clone.Fd())) == nil
	if !cloned {
		if err := w.copySparse(f, e); err != nil {
			return err
		}
	}
	w.bytes.Add(e.size)
	if err := f.Chown(e.uid, e.gid); err != nil {
		return fmt.Errorf("member %q: chown: %w", e.name, err)
	}
	if err := unix.Fchmod(fd, uint32(e.mode&0o7777)); err != nil {
		return fmt.Errorf("member %q: chmod: %w", e.name, err)
	}
	if err := setXattrs(fd, e); err != nil {
		return err
	}
	if err := fdTimes(fd, e.mtime); err != nil {
		return fmt.Errorf("member %q: times: %w", e.name, err)
	}
	return nil
}

// fdTimes sets the atime and mtime of the file open at fd (utimensat takes
// no AT_EMPTY_PATH; the descriptor's /proc link names that very file).
func fdTimes(fd int, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), ts, 0)
}

func (w *writer) copySparse(f *os.File, e *entry) error {
	var off int64
	for off < e.size {
		n := int64(len(w.buf))
		if e.size-off < n {
			n = e.size - off
		}
		b := w.buf[:n]
		if _, err := io.ReadFull(e.body, b); err != nil {
			return fmt.Errorf("member %q: read at %d of %d bytes: %w", e.name, off, e.size, err)
		}
		if !allZero(b) {
			if _, err := f.WriteAt(b, off); err != nil {
				return fmt.Errorf("member %q: %w", e.name, err)
			}
		}
		off += n
	}
	if err := f.Truncate(e.size); err != nil {
		return fmt.Errorf("member %q: %w", e.name, err)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// setXattrs sets e's extended attributes (ACLs are system.posix_acl_*),
// in name order.
func setXattrs(fd int, e *entry) error {
	names := make([]string, 0, len(e.xattrs))
	for k := range e.xattrs {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if err := unix.Fsetxattr(fd, k, []byte(e.xattrs[k]), 0); err != nil {
			return fmt.Errorf("member %q: xattr %s: %w", e.name, k, err)
		}
	}
	return nil
}

// meta records a directory's mode and mtime for the end, and sets its
// owner and xattrs now.
func (w *writer) meta(e *entry, name string) error {
	fd, err := beneath.OpenFd(w.root, name, unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("member %q: %w", e.name, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, e.uid, e.gid); err != nil {
		return fmt.Errorf("member %q: chown: %w", e.name, err)
	}
	if err := setXattrs(fd, e); err != nil {
		return err
	}
	w.dirs = append(w.dirs, dirMeta{name: name, mode: e.mode, mtime: e.mtime})
	return nil
}

func (w *writer) times(pfd int, base string, e *entry) error {
	ts := []unix.Timespec{unix.NsecToTimespec(e.mtime.UnixNano()), unix.NsecToTimespec(e.mtime.UnixNano())}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("member %q: times: %w", e.name, err)
	}
	return nil
}

// finish applies the directories' modes and mtimes, deepest first (a
// directory's mtime changes when an entry is made in it).
func (w *writer) finish() error {
	for _, e := range w.links {
		w.files.Add(-1) // counted when it was first seen
		if err := w.write(e); err != nil {
			return err
		}
	}
	w.links = nil
	// A source without an entry for its root (an image, a tar without
	// "./") gets the usual mode: staging was made private.
	if !slices.ContainsFunc(w.dirs, func(d dirMeta) bool { return d.name == "." }) {
		w.dirs = append(w.dirs, dirMeta{name: ".", mode: 0o755, mtime: time.Unix(0, 0)})
	}
	slices.SortStableFunc(w.dirs, func(a, b dirMeta) int {
		return strings.Count(b.name, "/") - strings.Count(a.name, "/")
	})
	for _, d := range w.dirs {
		fd, err := beneath.OpenFd(w.root, d.name, unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("directory %q: %w", d.name, err)
		}
		err = unix.Fchmod(fd, uint32(d.mode&0o7777))
		if err == nil {
			err = fdTimes(fd, d.mtime)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("directory %q: %w", d.name, err)
		}
	}
	return nil
}
