package fs

import (
	"bytes"
	"context"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// file is one version of one served name: the content a LOOKUP found,
// fixed for the life of the inode, like a file a tftpd opened on a plain
// filesystem while the admin replaces it by rename. Its size and bytes
// never change, so a tftpd's fstat after its open (tsize) and its reads
// always agree, whatever changes meanwhile; and the kernel may keep its
// attributes and pages for as long as it likes.
type file struct {
	fusefs.Inode
	src   Source
	name  string
	data  []byte
	mtime time.Time
	// final: no side effect of an open changes this version
	// (catalog.Content.Final).
	final   bool
	lookups *lookupLog // the mount's
}

var (
	_ = (fusefs.NodeGetattrer)((*file)(nil))
	_ = (fusefs.NodeOpener)((*file)(nil))
	_ = (fusefs.NodeSetattrer)((*file)(nil))
)

// attr fills the attributes of this version: world-readable, because
// tftpd-hpa without -p serves only world-readable files, and read-only.
func (f *file) attr(out *fuse.Attr) {
	out.Ino = f.StableAttr().Ino
	out.Mode = syscall.S_IFREG | 0o444
	out.Size = uint64(len(f.data))
	if !f.mtime.IsZero() {
		out.SetTimes(nil, &f.mtime, &f.mtime)
	}
	out.Nlink = 1
	out.Blksize = 4096
	out.Blocks = (out.Size + 511) / 512
}

// Getattr serves stat and fstat: this version's attributes, which never
// change.
func (f *file) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.attr(&out.Attr)
	out.SetTimeout(StableTimeout)
	return 0
}

// Setattr refuses truncate, chmod and the like: read-only filesystem.
func (f *file) Setattr(ctx context.Context, fh fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Open serves OPEN: a tftpd is about to send this file. It asks the source
// for the content to serve now, with the side effects of an open (a node
// in full mode gets its root first; the provisioner makes concurrent opens
// of one node share one provisioning). If that is this inode's version,
// the open serves it, keeping the page cache (a warm node's reads never
// reach the daemon), and commits it (the boot, an install serving, the
// image versions are counted once per served open).
//
// If the name holds another version now:
//   - this open's own path walk looked this version up, and the version
//     is final: the change came between the walk and the open, and the
//     fetch keeps the version its walk found, as an open(2) racing a
//     rename on a plain filesystem does;
//   - otherwise (the kernel's cached entry is older than a change, or
//     this very open provisioned the node, whose config now names its
//     root): ESTALE. The kernel then looks the name up again within the
//     same open(2), finds the new version's inode and opens that.
func (f *file) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	e, err := f.src.Resolve(ctx, f.name)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	o, err := f.src.Open(ctx, e)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	own := f.lookups.take(ctx, f.StableAttr().Ino)
	if !bytes.Equal(o.Data, f.data) && !(f.final && own) {
		return nil, 0, syscall.ESTALE
	}
	o.Commit()
	return &handle{f.data}, fuse.FOPEN_KEEP_CACHE, 0
}

// handle is one open of a version.
type handle struct{ data []byte }

var (
	_ = (fusefs.FileReader)((*handle)(nil))
	_ = (fusefs.FileFlusher)((*handle)(nil))
)

// Flush answers ENOSYS: a read-only file has nothing to flush, and after
// the first ENOSYS the kernel stops sending FLUSH on every close, which
// saves a round trip per tftpd transfer.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return syscall.ENOSYS }

// Read serves READ from the version opened.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(h.data)))
	return fuse.ReadResultData(h.data[off:end]), 0
}
