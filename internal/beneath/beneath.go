// Package beneath opens files inside an admin's directory by a name a
// client sent, following no symlink at any component and never leaving
// the directory, even while the tree is changed under it: every step is
// openat2(2) with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS relative to a
// descriptor of the directory, never a path string checked first and
// opened later. pxebootfs runs as root; a symlink swapped into a static
// directory must not make it serve /etc/shadow to a TFTP client.
package beneath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrSymlink is wrapped by the error for a name one of whose components is
// a symlink (or anything else that would leave the directory).
var ErrSymlink = errors.New("symlinks are not followed")

// resolve is what every open asks of the kernel.
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// Open opens rel (slash-separated, relative) inside dir read-only, with
// extra flags (e.g. unix.O_DIRECTORY). dir itself is opened by its path:
// it is the admin's configuration.
func Open(dir, rel string, flags int) (*os.File, error) {
	fd, err := OpenFd(dir, rel, flags)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, rel)), nil
}

// OpenFd is Open returning the raw descriptor, for callers that hand it
// on (a FUSE loopback file); the caller closes it.
func OpenFd(dir, rel string, flags int) (int, error) {
	d, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(d)
	how := &unix.OpenHow{Flags: uint64(unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | flags), Resolve: resolve}
	for {
		fd, err := unix.Openat2(d, rel, how)
		switch {
		case err == unix.EINTR, err == unix.EAGAIN:
			// EAGAIN: a rename elsewhere raced the lookup; the
			// kernel asks us to try again.
			continue
		case err == unix.ELOOP, err == unix.EXDEV:
			return -1, &os.PathError{Op: "open", Path: filepath.Join(dir, rel), Err: fmt.Errorf("%w: %w", ErrSymlink, err)}
		case err != nil:
			return -1, &os.PathError{Op: "open", Path: filepath.Join(dir, rel), Err: err}
		}
		return fd, nil
	}
}

// Stat is the lstat of rel inside dir, resolved like Open: a name with a
// symlink in the middle is an error; a symlink as the last component is
// reported as one (its Mode has ModeSymlink), never followed.
func Stat(dir, rel string) (os.FileInfo, error) {
	f, err := Open(dir, rel, unix.O_PATH)
	if err != nil {
		// O_NOFOLLOW with O_PATH opens a final symlink itself; any
		// other error is the name's.
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}
