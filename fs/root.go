package fs

import (
	"context"
	"net/netip"
	"sort"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/node"
)

// root is the mounted pxelinux.cfg directory.
type root struct {
	fusefs.Inode
	src     Source
	lookups lookupLog
}

var (
	_ = (fusefs.NodeLookuper)((*root)(nil))
	_ = (fusefs.NodeReaddirer)((*root)(nil))
	_ = (fusefs.NodeGetattrer)((*root)(nil))
	_ = (fusefs.NodeCreater)((*root)(nil))
	_ = (fusefs.NodeMkdirer)((*root)(nil))
	_ = (fusefs.NodeMknoder)((*root)(nil))
	_ = (fusefs.NodeUnlinker)((*root)(nil))
	_ = (fusefs.NodeRmdirer)((*root)(nil))
	_ = (fusefs.NodeRenamer)((*root)(nil))
	_ = (fusefs.NodeSymlinker)((*root)(nil))
	_ = (fusefs.NodeLinker)((*root)(nil))
	_ = (fusefs.NodeSetattrer)((*root)(nil))
)

// NewRoot returns the root node of the filesystem serving src.
func NewRoot(src Source) fusefs.InodeEmbedder { return &root{src: src} }

// Getattr serves stat of the mount point itself.
func (r *root) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	setDirAttr(out, rootIno)
	return 0
}

// Lookup serves LOOKUP, the first thing a tftpd's open does. It resolves
// the name and finds what it holds now, without side effects (ls, stat and
// pxelinux's fall-through probes must not create anything), and answers
// with the inode of that version: the same inode as long as the content is
// the same, another one when it changed (see file). Runs concurrently for
// different names.
func (r *root) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if name == byIPName && r.fullMode() {
		fillDirAttr(&out.Attr, byIPIno)
		out.SetEntryTimeout(StableTimeout)
		out.SetAttrTimeout(StableTimeout)
		return r.NewInode(ctx, &byIP{src: r.src.(NodeSource)}, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: byIPIno}), 0
	}
	e, err := r.src.Resolve(ctx, name)
	if err != nil {
		return nil, toErrno(err)
	}
	if e.Kind == catalog.KindDir {
		t := newStaticTree(e.Static)
		if errno := statAttr(t.dir, t.rel, &out.Attr); errno != 0 {
			return nil, errno
		}
		return r.NewInode(ctx, t, fusefs.StableAttr{Mode: syscall.S_IFDIR}), 0
	}
	c, err := r.src.Peek(e)
	if err != nil {
		return nil, toErrno(err)
	}
	ino := versionIno(name, c.Data)
	f := &file{src: r.src, name: name, data: c.Data, mtime: c.Mtime, final: c.Final, lookups: &r.lookups}
	ch := r.NewInode(ctx, f, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: ino})
	// The kernel may hand back the inode it already has of this version:
	// its attributes are the same.
	ch.Operations().(*file).attr(&out.Attr)
	r.lookups.add(ctx, ino)
	out.SetAttrTimeout(StableTimeout)
	if c.Stable {
		out.SetEntryTimeout(StableTimeout)
	}
	return ch, 0
}

// fullMode: the source gives nodes roots, so by-ip/ exists.
func (r *root) fullMode() bool {
	ns, ok := r.src.(NodeSource)
	return ok && ns.FullMode()
}

// invalidate makes the kernel look every name up again: after a change of
// the catalog, a name may hold a new version, which is a new inode. The
// inodes of older versions stay as they are for the tftpds that have them
// open.
func (r *root) invalidate() {
	for name := range r.Children() {
		r.NotifyEntry(name)
	}
}

// Readdir serves ls: static files, provisioned nodes by hex name, by-ip/.
// Names are listed, not resolved: no template renders and no content
// generator runs for an ls (sizes come with each name's own LOOKUP).
func (r *root) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	list := r.src.List()
	ents := make([]fuse.DirEntry, 0, len(list)+1)
	full := r.fullMode()
	if full {
		ents = append(ents, fuse.DirEntry{Name: byIPName, Mode: syscall.S_IFDIR, Ino: byIPIno})
	}
	for _, e := range list {
		// In full mode by-ip/ shadows a static file of that name, as in
		// Lookup.
		if !full || e.Name != byIPName {
			mode := uint32(syscall.S_IFREG)
			if e.Dir {
				mode = syscall.S_IFDIR
			}
			ents = append(ents, fuse.DirEntry{Name: e.Name, Mode: mode, Ino: nameIno(e.Name)})
		}
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	return fusefs.NewListDirStream(ents), 0
}

// The filesystem is read-only: the mount carries "ro" so the kernel refuses
// writes first, and these answer EROFS for anything that reaches us anyway.

func (r *root) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}
func (r *root) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (r *root) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (r *root) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }
func (r *root) Rmdir(ctx context.Context, name string) syscall.Errno  { return syscall.EROFS }
func (r *root) Rename(ctx context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}
func (r *root) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (r *root) Link(ctx context.Context, target fusefs.InodeEmbedder, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (r *root) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// byIP is by-ip/: one symlink per provisioned node, named by dotted IP and
// pointing at node_dir/NODE, as the original tool offered.
type byIP struct {
	fusefs.Inode
	src NodeSource
}

var (
	_ = (fusefs.NodeLookuper)((*byIP)(nil))
	_ = (fusefs.NodeReaddirer)((*byIP)(nil))
	_ = (fusefs.NodeGetattrer)((*byIP)(nil))
)

// Getattr serves stat of by-ip/.
func (d *byIP) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	setDirAttr(out, byIPIno)
	return 0
}

// find returns the provisioned node whose dotted IP is name.
func (d *byIP) find(name string) (node.ID, bool) {
	addr, err := netip.ParseAddr(name)
	if err != nil || addr.String() != name {
		return node.ID{}, false
	}
	for _, n := range d.src.Nodes() {
		if n.ID.Addr() == addr {
			return n.ID, true
		}
	}
	return node.ID{}, false
}

// Lookup serves LOOKUP in by-ip/; only provisioned nodes exist here.
func (d *byIP) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	id, ok := d.find(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	ino := linkIno(id)
	target := d.src.NodeDir(id)
	out.Attr.Ino = ino
	out.Attr.Mode = syscall.S_IFLNK | 0o777
	out.Attr.Size = uint64(len(target))
	out.Attr.Nlink = 1
	return d.NewInode(ctx, &link{src: d.src, name: name}, fusefs.StableAttr{Mode: syscall.S_IFLNK, Ino: ino}), 0
}

// Readdir serves ls of by-ip/.
func (d *byIP) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	var ents []fuse.DirEntry
	for _, n := range d.src.Nodes() {
		ents = append(ents, fuse.DirEntry{Name: n.ID.Addr().String(), Mode: syscall.S_IFLNK, Ino: linkIno(n.ID)})
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	return fusefs.NewListDirStream(ents), 0
}

type link struct {
	fusefs.Inode
	src  NodeSource
	name string // dotted IP
}

var (
	_ = (fusefs.NodeReadlinker)((*link)(nil))
	_ = (fusefs.NodeGetattrer)((*link)(nil))
)

func (l *link) target() ([]byte, syscall.Errno) {
	addr, err := netip.ParseAddr(l.name)
	if err != nil {
		return nil, syscall.ENOENT
	}
	for _, n := range l.src.Nodes() {
		if n.ID.Addr() == addr {
			return []byte(l.src.NodeDir(n.ID)), 0
		}
	}
	return nil, syscall.ENOENT
}

// Readlink serves READLINK of by-ip/IP.
func (l *link) Readlink(ctx context.Context) ([]byte, syscall.Errno) { return l.target() }

// Getattr serves stat of by-ip/IP.
func (l *link) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	t, errno := l.target()
	if errno != 0 {
		return errno
	}
	out.Attr.Mode = syscall.S_IFLNK | 0o777
	out.Attr.Size = uint64(len(t))
	out.Attr.Nlink = 1
	return 0
}
