package fs

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pxebootfs/pxebootfs/internal/pxename"
)

// staticTree is a directory of grub_static_dir served as it is, read-only:
// GRUB loads its modules and fonts from subdirectories of its prefix
// (x86_64-efi/*.mod, fonts/), which the GRUB mount would otherwise hide.
// Only directories and regular files are shown; symlinks are not followed
// (they could point anywhere on the server), names are checked like static
// names.
type staticTree struct {
	fusefs.Inode
	path string
}

var (
	_ = (fusefs.NodeLookuper)((*staticTree)(nil))
	_ = (fusefs.NodeReaddirer)((*staticTree)(nil))
	_ = (fusefs.NodeGetattrer)((*staticTree)(nil))
)

func (d *staticTree) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return lstatAttr(d.path, &out.Attr)
}

// lstatAttr fills out from path, read-only to everyone.
func lstatAttr(path string, out *fuse.Attr) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return toErrno(err)
	}
	out.FromStat(&st)
	out.Mode &^= 0o7222
	out.Mode |= 0o444
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		out.Mode |= 0o111
	}
	return 0
}

func (d *staticTree) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if pxename.CheckStatic(name) != nil {
		return nil, syscall.ENOENT
	}
	p := filepath.Join(d.path, name)
	if errno := lstatAttr(p, &out.Attr); errno != 0 {
		return nil, errno
	}
	switch out.Attr.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return d.NewInode(ctx, &staticTree{path: p}, fusefs.StableAttr{Mode: syscall.S_IFDIR}), 0
	case syscall.S_IFREG:
		return d.NewInode(ctx, &staticFile{path: p}, fusefs.StableAttr{Mode: syscall.S_IFREG}), 0
	}
	return nil, syscall.ENOENT
}

func (d *staticTree) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	des, err := os.ReadDir(d.path)
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
	path string
}

var (
	_ = (fusefs.NodeOpener)((*staticFile)(nil))
	_ = (fusefs.NodeGetattrer)((*staticFile)(nil))
)

func (f *staticFile) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return lstatAttr(f.path, &out.Attr)
}

func (f *staticFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	fd, err := syscall.Open(f.path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	return fusefs.NewLoopbackFile(fd), 0, 0
}
