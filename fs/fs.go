package fs

import (
	"context"
	"errors"
	iofs "io/fs"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/node"
)

// Source is what the filesystem serves: the core every mount needs;
// *catalog.Catalog implements it. A source may also be a NodeSource (the
// mount then has by-ip/) and a Notifier (changes are then pushed to the
// kernel's caches), found by type assertion the way go-fuse discovers
// what a node implements.
type Source interface {
	// Resolve decides what name is; ctx is the FUSE request's, so a
	// content generator run for it ends when the request is interrupted.
	Resolve(ctx context.Context, name string) (catalog.Entry, error)
	// Peek is what e holds now, with no side effects.
	Peek(e catalog.Entry) (catalog.Content, error)
	// Open is what one open of e serves now, with the side effects of
	// an open; Commit it when it is served.
	Open(ctx context.Context, e catalog.Entry) (catalog.Opened, error)
	// List is what ls shows, without resolving each name.
	List() []catalog.DirEntry
}

// NodeSource is a source that gives nodes roots: its mount has by-ip/,
// one symlink per node to its root, when FullMode.
type NodeSource interface {
	FullMode() bool
	Nodes() []node.Node
	NodeDir(id node.ID) string
}

// Notifier is a source that announces changes of what names hold (a
// reload), once the new content is served.
type Notifier interface {
	OnChange(f func())
}

// Cache timeouts; see the package documentation for why.
const (
	EntryTimeout    = time.Second
	AttrTimeout     = 0
	NegativeTimeout = time.Second
	// StableTimeout is how long the kernel keeps the entry of a stable
	// name (catalog.Content.Stable: every change of what it holds is
	// announced and invalidated explicitly) and the attributes of every
	// version, which never change.
	StableTimeout = time.Hour
)

// byIPName is the directory of per-node symlinks by dotted IP, kept from the
// original tool; no pxelinux name can collide with it.
const byIPName = "by-ip"

// inode numbers of our two directories; every other inode number carries
// a tag in the top byte (ino.go), so these small numbers never collide
// with them.
const (
	rootIno = 1
	byIPIno = 2
)

// toErrno is the one place errors become errnos. It decides what a tftpd
// (or ls) is told, by what the error means for the name asked for:
//
//   - nil: 0;
//   - not served / does not exist: ENOENT, so pxelinux falls through its
//     search order as on a plain tftpd;
//   - the request's context was cancelled (FUSE INTERRUPT): EINTR;
//   - a bare errno that is about the name or the filesystem itself
//     (EROFS, ENAMETOOLONG, EACCES): that errno;
//   - everything else, including a deadline and an errno carried deep
//     inside a failed mount or exportfs run: EIO. The tftpd only needs to
//     know the file cannot be sent now; the log has the cause. (go-fuse's
//     own ToErrno would not unwrap %w at all and answer ENOSYS.)
func toErrno(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, iofs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.As(err, &errno) && passThrough[errno]:
		return errno
	}
	return syscall.EIO
}

// passThrough are the errnos toErrno passes on as they are.
var passThrough = map[syscall.Errno]bool{
	syscall.EROFS:        true,
	syscall.ENAMETOOLONG: true,
	syscall.EACCES:       true,
}

// setDirAttr fills the attributes of our own directories (the mount's root
// and by-ip/), which never change. The kernel may keep them: with
// default_permissions it checks the root's mode on every path walk through
// the mount, and with a zero timeout that check was one more GETATTR round
// trip on every tftpd open.
func setDirAttr(out *fuse.AttrOut, ino uint64) {
	fillDirAttr(&out.Attr, ino)
	out.SetTimeout(StableTimeout)
}

func fillDirAttr(out *fuse.Attr, ino uint64) {
	out.Ino = ino
	out.Mode = syscall.S_IFDIR | 0o555
	out.Nlink = 2
}
