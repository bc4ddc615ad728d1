package roots

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// seal makes dir a read-only bind mount of itself, unless it already is a
// read-only mount root. Both checks are O(1) (statx, statfs): the mount
// table of a busy server lists thousands of overlays.
func seal(dir string) error {
	root, err := isMountRoot(dir)
	if err != nil {
		return fmt.Errorf("seal %s: %w", dir, err)
	}
	if root {
		ro, err := readOnly(dir)
		if err != nil {
			return fmt.Errorf("seal %s: %w", dir, err)
		}
		if ro {
			return nil
		}
	} else if err := retry(func() error { return unix.Mount(dir, dir, "", unix.MS_BIND, "") }); err != nil {
		return fmt.Errorf("seal %s: bind mount: %w", dir, err)
	}
	// A bind mount takes MS_RDONLY only on a remount of itself.
	if err := retry(func() error {
		return unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
	}); err != nil {
		return fmt.Errorf("seal %s: remount read-only: %w", dir, err)
	}
	return nil
}

// unseal removes every mount stacked on dir (a generation about to be
// deleted). Nodes are never pinned to it by then, so nothing uses it.
func unseal(dir string) error {
	for {
		root, err := isMountRoot(dir)
		if err != nil || !root {
			return err
		}
		if err := retry(func() error { return unix.Unmount(dir, 0) }); err != nil {
			if errors.Is(err, unix.EINVAL) {
				// A mount root that is not a mount of its own: the
				// filesystem's root, never ours to remove.
				return fmt.Errorf("unseal %s: not a mount of pxebootfs: %w", dir, err)
			}
			return fmt.Errorf("unseal %s: %w", dir, err)
		}
	}
}

// sealed reports whether dir is a read-only mount root, as seal leaves a
// generation.
func sealed(dir string) (bool, error) {
	root, err := isMountRoot(dir)
	if err != nil || !root {
		return false, err
	}
	return readOnly(dir)
}

func isMountRoot(path string) (bool, error) {
	var stx unix.Statx_t
	err := retry(func() error {
		return unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &stx)
	})
	if err != nil {
		return false, err
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, errors.New("the kernel does not report mount roots (statx, Linux 5.8)")
	}
	return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

func readOnly(path string) (bool, error) {
	var st unix.Statfs_t
	if err := retry(func() error { return unix.Statfs(path, &st) }); err != nil {
		return false, err
	}
	return st.Flags&unix.ST_RDONLY != 0, nil
}

func retry(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}
