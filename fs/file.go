package fs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// file is one served name. It keeps only the name: what the name means
// (which node, which static file) is resolved again on every operation, so
// a reload of ethers or the template is seen at once.
type file struct {
	fusefs.Inode
	src  Source
	name string
}

var (
	_ = (fusefs.NodeGetattrer)((*file)(nil))
	_ = (fusefs.NodeOpener)((*file)(nil))
	_ = (fusefs.NodeSetattrer)((*file)(nil))
)

// Getattr serves stat and fstat. It always renders the current content
// rather than trusting an open handle, because the kernel does not say which
// handle an fstat came from (go-fuse guesses the first open one): this way
// the size announced as tsize matches what the same open reads.
func (f *file) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e, err := f.src.Resolve(ctx, f.name)
	if err != nil {
		return toErrno(err)
	}
	st, err := f.src.Stat(e)
	if err != nil {
		return toErrno(err)
	}
	setFileAttr(&out.Attr, e.Ino, st)
	return 0
}

// Setattr refuses truncate, chmod and the like: read-only filesystem.
func (f *file) Setattr(ctx context.Context, fh fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Open serves OPEN: a tftpd is about to send this file. For a node in full
// mode this provisions its root first and blocks until it is ready; the
// provisioner makes concurrent opens of one node share one provisioning.
// The content is rendered once per open, so every read of this open sees
// one consistent version.
func (f *file) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	e, err := f.src.Resolve(ctx, f.name)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	b, err := f.src.Open(ctx, e)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	return &handle{data: b}, 0, 0
}

// handle is one open's content.
type handle struct {
	data []byte
}

var _ = (fusefs.FileReader)((*handle)(nil))

// Read serves READ from the content rendered at open.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := off + int64(len(dest))
	if end > int64(len(h.data)) {
		end = int64(len(h.data))
	}
	return fuse.ReadResultData(h.data[off:end]), 0
}
