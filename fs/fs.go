package fs

import (
	"context"
	"errors"
	iofs "io/fs"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pxebootfs/pxebootfs/internal/catalog"
)

// Source is what the filesystem serves; *catalog.Catalog implements it.
type Source interface {
	Resolve(name string) (catalog.Entry, error)
	Stat(e catalog.Entry) (catalog.Stat, error)
	Open(ctx context.Context, e catalog.Entry) ([]byte, error)
	StaticNames() []string
	Nodes() []catalog.Node
	NodeDir(n catalog.Node) string
	FullMode() bool
}

// Cache timeouts; see the package documentation for why.
const (
	EntryTimeout    = time.Second
	AttrTimeout     = 0
	NegativeTimeout = time.Second
)

// byIPName is the directory of per-node symlinks by dotted IP, kept from the
// original tool; no pxelinux name can collide with it.
const byIPName = "by-ip"

// inode numbers of our two directories; catalog inodes carry a tag in the
// top byte, so these small numbers never collide with them.
const (
	rootIno = 1
	byIPIno = 2
)

// toErrno is the one place errors become errnos. go-fuse's ToErrno does not
// look through %w wrapping, so a wrapped EIO would reach the client as
// ENOSYS; we unwrap first and map the rest deliberately.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	if errors.Is(err, iofs.ErrNotExist) {
		return syscall.ENOENT
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return syscall.EINTR
	}
	return syscall.EIO
}

// setFileAttr fills attributes for a served file: world-readable, because
// tftpd-hpa without -p serves only world-readable files, and read-only.
func setFileAttr(out *fuse.Attr, ino uint64, st catalog.Stat) {
	out.Ino = ino
	out.Mode = syscall.S_IFREG | 0o444
	out.Size = uint64(st.Size)
	if !st.Mtime.IsZero() {
		out.SetTimes(nil, &st.Mtime, &st.Mtime)
	}
	out.Nlink = 1
	out.Blksize = 4096
	out.Blocks = (out.Size + 511) / 512
}

func setDirAttr(out *fuse.Attr, ino uint64) {
	out.Ino = ino
	out.Mode = syscall.S_IFDIR | 0o555
	out.Nlink = 2
}
