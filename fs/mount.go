package fs

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// MountOptions configures Mount.
type MountOptions struct {
	// Debug logs every FUSE request (go-fuse's own debug output).
	Debug  bool
	Logger *slog.Logger

	// debugLog receives go-fuse's request log instead of the standard
	// logger: how tests count the requests an operation costs.
	debugLog *log.Logger
}

// Server is a mounted pxebootfs.
type Server struct {
	*fuse.Server
	dir string
	log *slog.Logger
}

// Mount mounts src read-only at dir with allow_other (tftpd-hpa and atftpd
// serve as nobody/tftp, and FUSE hides a mount from other users without it).
// A dead mount left at dir by a killed daemon (ENOTCONN) is cleared first.
func Mount(dir string, src Source, o MountOptions) (*Server, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := clearDeadMount(dir, log); err != nil {
		return nil, err
	}
	entry, attr, neg := EntryTimeout, time.Duration(AttrTimeout), NegativeTimeout
	opts := &fusefs.Options{
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &neg,
		MountOptions: fuse.MountOptions{
			AllowOther: true,
			FsName:     "pxebootfs",
			Name:       "pxebootfs",
			Options:    []string{"ro", "default_permissions"},
			Debug:      o.Debug || o.debugLog != nil,
			Logger:     o.debugLog,
			// As root, mount(2) directly; fusermount3 is the fallback.
			DirectMount: true,
			// Many tftpd children open at once during a boot storm; the
			// default of 16 background requests would queue them.
			MaxBackground: 64,
		},
	}
	r := &root{src: src}
	srv, err := fusefs.Mount(dir, r, opts)
	if err != nil {
		return nil, fmt.Errorf("mount pxebootfs at %s: %w", dir, err)
	}
	if n, ok := src.(Notifier); ok {
		n.OnChange(r.invalidate)
	}
	return &Server{Server: srv, dir: dir, log: log}, nil
}

// Close unmounts. If a tftpd still holds a file open (tftpd-hpa children
// linger ~60 s after a client went away), a plain unmount fails with EBUSY,
// so it detaches lazily instead: the mount disappears from the namespace at
// once and the kernel finishes it when the last file closes.
func (s *Server) Close() error {
	err := s.Unmount()
	if err == nil {
		return nil
	}
	s.log.Warn("unmount busy; detaching lazily", "dir", s.dir, "err", err)
	if derr := detach(s.dir); derr != nil {
		return fmt.Errorf("unmount %s: %w (lazy unmount: %v)", s.dir, err, derr)
	}
	return nil
}

// clearDeadMount detaches a FUSE mount whose daemon died (kill -9): asking
// it anything then fails with ENOTCONN, and mounting on top of it would
// stack the new mount over a dead one.
func clearDeadMount(dir string, log *slog.Logger) error {
	if !Dead(dir) {
		return nil
	}
	log.Warn("clearing dead FUSE mount left by a previous daemon", "dir", dir)
	if err := detach(dir); err != nil {
		return fmt.Errorf("clear dead mount at %s: %w", dir, err)
	}
	return nil
}

// Dead reports whether dir is a FUSE mount whose daemon died. It asks with
// statfs, which the kernel always sends to the daemon: a stat of the mount
// point is answered from the attributes the kernel caches (see
// setDirAttr) and succeeds on a dead mount.
func Dead(dir string) bool {
	var st unix.Statfs_t
	return errors.Is(unix.Statfs(dir, &st), unix.ENOTCONN)
}

// detach lazily unmounts dir. As root the syscall works directly; otherwise
// fusermount3 may do it for the user who mounted.
func detach(dir string) error {
	for {
		err := unix.Unmount(dir, unix.MNT_DETACH)
		if err == unix.EINTR {
			continue
		}
		if err == nil || err == unix.EINVAL { // EINVAL: not mounted anymore
			return nil
		}
		return fmt.Errorf("umount -l %s: %w", dir, err)
	}
}
