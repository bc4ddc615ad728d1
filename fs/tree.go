package fs

import (
	"context"
	"errors"
	"path"
	"path/filepath"
	"sort"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/beneath"
	"github.com/pxebootfs/pxebootfs/internal/pxename"
)

// staticTree is a directory of a static directory served as it is,
// read-only: GRUB loads its modules and fonts from subdirectories of its
// prefix (x86_64-efi/*.mod, fonts/), which the GRUB mount would otherwise
// hide. Only directories and regular files are shown, names are checked
// like static names, and every operation resolves its path beneath the
// static directory with no symlink followed at any component
// (internal/beneath): a subdirectory an admin (or anyone who can write
// there) swaps for a symlink is not served, not even in a race.
type staticTree struct {
	fusefs.Inode
	dir string // the static directory
	rel string // this directory, relative to dir
}

var (
	_ = (fusefs.NodeLookuper)((*staticTree)(nil))
	_ = (fusefs.NodeReaddirer)((*staticTree)(nil))
	_ = (fusefs.NodeGetattrer)((*staticTree)(nil))
)

// newStaticTree is the tree of subdirectory path (as the catalog resolved
// it: the static directory joined with one name).
func newStaticTree(p string) *staticTree {
	return &staticTree{dir: filepath.Dir(p), rel: filepath.Base(p)}
}

func (d *staticTree) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return statAttr(d.dir, d.rel, &out.Attr)
}

// statAttr fills out from rel beneath dir, read-only to everyone.
func statAttr(dir, rel string, out *fuse.Attr) syscall.Errno {
	fi, err := beneath.Stat(dir, rel)
	if err != nil {
		return treeErrno(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	out.FromStat(st)
	out.Mode &^= 0o7222
	out.Mode |= 0o444
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		out.Mode |= 0o111
	}
	return 0
}

// treeErrno: a name that is or goes through a symlink does not exist here.
func treeErrno(err error) syscall.Errno {
	if errors.Is(err, beneath.ErrSymlink) {
		return syscall.ENOENT
	}
	return toErrno(err)
}

func (d *staticTree) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if pxename.CheckStatic(name) != nil {
		return nil, syscall.ENOENT
	}
	rel := path.Join(d.rel, name)
	if errno := statAttr(d.dir, rel, &out.Attr); errno != 0 {
		return nil, errno
	}
	switch out.Attr.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return d.NewInode(ctx, &staticTree{dir: d.dir, rel: rel}, fusefs.StableAttr{Mode: syscall.S_IFDIR}), 0
	case syscall.S_IFREG:
		return d.NewInode(ctx, &staticFile{dir: d.dir, rel: rel}, fusefs.StableAttr{Mode: syscall.S_IFREG}), 0
	}
	return nil, syscall.ENOENT // a symlink, a device, a fifo: not served
}

func (d *staticTree) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	f, err := beneath.Open(d.dir, d.rel, unix.O_DIRECTORY)
	if err != nil {
		return nil, treeErrno(err)
	}
	des, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return nil, toErrno(err)
	}
	var ents []fuse.DirEntry
	for _, de := range des {
		if pxename.CheckStatic(de.Name()) != nil {
			continue
		}
		switch {
		case de.IsDir():
			ents = append(ents, fuse.DirEntry{Name: de.Name(), Mode: syscall.S_IFDIR})
		case de.Type().IsRegular():
			ents = append(ents, fuse.DirEntry{Name: de.Name(), Mode: syscall.S_IFREG})
		}
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	return fusefs.NewListDirStream(ents), 0
}

// staticFile is a regular file of the static tree, read from disk on every
// read (modules are large; nothing is held in memory).
type staticFile struct {
	fusefs.Inode
	dir, rel string
}

var (
	_ = (fusefs.NodeOpener)((*staticFile)(nil))
	_ = (fusefs.NodeGetattrer)((*staticFile)(nil))
)

func (f *staticFile) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return statAttr(f.dir, f.rel, &out.Attr)
}

func (f *staticFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	fd, err := beneath.OpenFd(f.dir, f.rel, 0)
	if err != nil {
		return nil, 0, treeErrno(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, 0, syscall.ENOENT // replaced by something that is not a file
	}
	return fusefs.NewLoopbackFile(fd), 0, 0
}
