package fs

import (
	"bytes"
	"context"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pxebootfs/pxebootfs/internal/catalog"
)

// file is one served name. What the name means (which node, which static
// file) is resolved again on every operation, so a reload of ethers or the
// template is seen at once. It remembers what the kernel may hold for it.
type file struct {
	fusefs.Inode
	src  Source
	name string

	mu sync.Mutex
	// cached is the last size given to the kernel with StableTimeout, -1
	// if none. It is not reset when the kernel's copy is invalidated: a
	// reply racing with the invalidation may still have planted it, and
	// an extra invalidation costs little.
	cached int64
	// served is the content of the last open, which the page cache may
	// hold; an open with the same content keeps the page cache.
	served []byte
	// gen numbers the contents served: it changes when an open serves
	// other bytes than the last one.
	gen uint64
	// dirty: since the last open, a read of an older content went through
	// the kernel, which may have put its pages in the page cache or, if
	// it ended early, its size in the attributes (see read).
	dirty bool
}

// reported notes the attributes just given to the kernel.
func (f *file) reported(st catalog.Stat) {
	if !st.Stable {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cached = st.Size
}

// opened notes the content one open serves. It returns whether the page
// cache may be kept (it can only hold this content) and whether the size
// the kernel caches is no longer right: the caller must then invalidate it
// before the open returns, so that the tftpd's fstat, which follows its
// open, asks again and announces the size this open reads.
//
// Whether the kernel applied a size we gave it cannot be known (it drops a
// reply that raced with a newer change), so an open does not trust that
// bookkeeping alone: any change of content since the last open, or an early
// read of an older content since, invalidates too. Content changes are
// rare; a spare invalidation costs one GETATTR.
func (f *file) opened(b []byte) (keep, stale bool, gen uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	same := f.served != nil && bytes.Equal(f.served, b)
	keep = same && !f.dirty
	stale = f.dirty || (f.served != nil && !same) || (f.cached >= 0 && f.cached != int64(len(b)))
	if !same {
		f.gen++
	}
	f.served, f.dirty = b, false
	return keep, stale, f.gen
}

var (
	_ = (fusefs.NodeGetattrer)((*file)(nil))
	_ = (fusefs.NodeOpener)((*file)(nil))
	_ = (fusefs.NodeSetattrer)((*file)(nil))
)

// Getattr serves stat and fstat when the kernel has no valid attributes. It
// renders the current content rather than trusting an open handle, because
// the kernel does not say which handle an fstat came from (go-fuse guesses
// the first open one): this way the size announced as tsize matches what
// the same open reads.
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
	f.reported(st)
	if st.Stable {
		out.SetTimeout(StableTimeout)
	}
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
// one consistent version. An open of the same content as the last keeps
// the page cache, so a warm node's reads never reach the daemon.
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
	keep, stale, gen := f.opened(b)
	if stale {
		// The kernel processes the notification before it gets our
		// reply, so no fstat can see the old size after this open.
		f.NotifyContent(0, 0)
	}
	var fuseFlags uint32
	if keep {
		fuseFlags = fuse.FOPEN_KEEP_CACHE
	}
	return &handle{data: b, f: f, gen: gen}, fuseFlags, 0
}

// read notes a READ answered from an open of content generation gen,
// ending early (short) at n bytes. The kernel takes a short read as the
// file's new size, whatever its cached attributes say, and puts what it
// read in the page cache: a read of an older content (an open that
// straddled a change) can so plant the old size or old pages, and the next
// open must clear them.
func (f *file) read(gen uint64, short bool, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if short && f.cached >= 0 {
		f.cached = n
	}
	if gen != f.gen {
		f.dirty = true
	}
}

// handle is one open's content.
type handle struct {
	data []byte
	f    *file
	gen  uint64 // of data, in f's numbering
}

var (
	_ = (fusefs.FileReader)((*handle)(nil))
	_ = (fusefs.FileFlusher)((*handle)(nil))
)

// Flush answers ENOSYS: a read-only file has nothing to flush, and after
// the first ENOSYS the kernel stops sending FLUSH on every close, which
// saves a round trip per tftpd transfer.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return syscall.ENOSYS }

// Read serves READ from the content rendered at open.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.data)) {
		h.f.read(h.gen, true, int64(len(h.data)))
		return fuse.ReadResultData(nil), 0
	}
	end := off + int64(len(dest))
	short := end > int64(len(h.data))
	if short {
		end = int64(len(h.data))
	}
	h.f.read(h.gen, short, end)
	return fuse.ReadResultData(h.data[off:end]), 0
}
