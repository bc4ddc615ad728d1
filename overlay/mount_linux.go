package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// maxStacked bounds how many overlays Unmount peels off one mount point. More
// than one is only there if something stacked them behind our back.
const maxStacked = 8

// ignoringEINTR runs fn until it fails with something other than EINTR.
func ignoringEINTR(fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// mountArgs returns the source, fstype and options that mount p.
func (m *Manager) mountArgs(p Paths) (source, fstype, opts string, err error) {
	switch m.typ {
	case AUFS:
		opts, err = aufsOptions(p.Upper, p.Lower, m.extra)
		return "none", "aufs", opts, err
	default:
		opts, err = overlayOptions(p.Lower, p.Upper, p.Work, m.extra)
		return "overlay", "overlay", opts, err
	}
}

// mountSyscall is mount(2), retried on EINTR; its error names the whole call.
func mountSyscall(source, target, fstype, opts string) error {
	err := ignoringEINTR(func() error { return unix.Mount(source, target, fstype, 0, opts) })
	if err != nil {
		return fmt.Errorf("mount(%q, %q, %q, 0, %q): %w", source, target, fstype, opts, err)
	}
	return nil
}

// unmountSyscall is umount2(2), retried on EINTR. UMOUNT_NOFOLLOW keeps a
// symlink planted at the target from redirecting the unmount.
func unmountSyscall(target string, flags int) error {
	return ignoringEINTR(func() error { return unix.Unmount(target, flags|unix.UMOUNT_NOFOLLOW) })
}

// isOverlay reports whether fstype is one this package mounts.
func isOverlay(fstype string) bool {
	return fstype == "overlay" || fstype == "aufs"
}

// topMounts maps each mount point in infos to the mount visible there: of
// mounts stacked on one point, the one no other mount sits on.
func topMounts(infos []*mountinfo.Info) map[string]*mountinfo.Info {
	byPoint := make(map[string][]*mountinfo.Info)
	for _, i := range infos {
		byPoint[i.Mountpoint] = append(byPoint[i.Mountpoint], i)
	}
	top := make(map[string]*mountinfo.Info, len(byPoint))
	for mp, group := range byPoint {
		under := make(map[int]bool, len(group))
		for _, i := range group {
			under[i.Parent] = true
		}
		top[mp] = group[len(group)-1]
		for _, i := range group {
			if !under[i.ID] {
				top[mp] = i
			}
		}
	}
	return top
}

// mountAt returns the mount visible at target, or nil if there is none.
//
// The mount table is read only when target is a mount root: reading it
// costs O(mounts) (the kernel prints every mount), which once made each new
// node's mount slower than the last; statx tells a plain directory in O(1).
func mountAt(target string) (*mountinfo.Info, error) {
	switch root, err := isMountRoot(target); {
	case errors.Is(err, unix.ENOENT):
		return nil, nil
	case err == nil && !root:
		return nil, nil
	}
	infos, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		// Not SingleEntryFilter: it stops at the first of stacked mounts.
		return i.Mountpoint != target, false
	})
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return topMounts(infos)[target], nil
}

// isMountRoot reports whether path is the root of a mount, by statx's
// STATX_ATTR_MOUNT_ROOT (Linux 5.8); true when the kernel cannot tell, so
// that the caller reads the mount table. A symlink is not followed.
func isMountRoot(path string) (bool, error) {
	var stx unix.Statx_t
	err := ignoringEINTR(func() error {
		return unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &stx)
	})
	if err != nil {
		return true, err
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return true, nil
	}
	return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// superOption returns the value of key in a mount's superblock options.
// Our paths contain no ',' (checkOptionPath), so splitting on ',' is exact
// for them; a foreign path with an escaped ',' just fails to match.
func superOption(info *mountinfo.Info, key string) (string, bool) {
	for _, o := range strings.Split(info.VFSOptions, ",") {
		if k, v, ok := strings.Cut(o, "="); ok && k == key {
			return v, true
		} else if !ok && o == key {
			return "", true
		}
	}
	return "", false
}

// checkMounted decides whether the mount info at p.Mount is this node's
// overlay, usable as it is: the right layers, exportable over NFS. aufs does
// not show its branches in the mount table, so an aufs mount is taken on
// trust.
func checkMounted(info *mountinfo.Info, p Paths) error {
	if !isOverlay(info.FSType) {
		return fmt.Errorf("%s has a %s filesystem (source %q) mounted on it, not an overlay; refusing to mount over it", p.Mount, info.FSType, info.Source)
	}
	if info.FSType != "overlay" {
		return nil
	}
	for _, want := range []struct{ key, val string }{
		{"lowerdir", p.Lower}, {"upperdir", p.Upper},
		{"index", "on"}, {"nfs_export", "on"},
	} {
		got, _ := superOption(info, want.key)
		if got != want.val {
			return fmt.Errorf("the overlay mounted at %s has %s=%q, want %q (options %s)", p.Mount, want.key, got, want.val, info.VFSOptions)
		}
	}
	return nil
}

// Mount mounts node's overlay over the root dir; see MountOver.
func (m *Manager) Mount(id node.ID) (adopted bool, err error) { return m.MountOver(id, "") }

// MountOver mounts node's overlay at its mount point with lower as its lower
// layer ("" is Options.RootDir), creating the directories it needs. If the
// node's overlay is already mounted there (from an earlier run), MountOver
// adopts it and reports adopted; an overlay of other layers — another lower
// above all: an upper layer records its lower's origin and must never be
// mounted over another — or any other filesystem at the mount point is an
// error.
func (m *Manager) MountOver(id node.ID, lower string) (adopted bool, err error) {
	node := id.String()
	p, err := m.Paths(id)
	if err != nil {
		return false, fmt.Errorf("mount overlay: %w", err)
	}
	if lower != "" {
		// The mount table lists resolved paths.
		if p.Lower, err = resolveDir("lower dir", lower, false); err != nil {
			return false, fmt.Errorf("mount overlay for %s: %w", node, err)
		}
	}
	if p.Lower == "" {
		return false, fmt.Errorf("mount overlay for %s: no lower dir (root_dir is not set)", node)
	}
	defer m.lock(id)()

	info, err := mountAt(p.Mount)
	if err != nil {
		return false, fmt.Errorf("mount overlay for %s: %w", node, err)
	}
	if info != nil {
		if err := checkMounted(info, p); err != nil {
			return false, fmt.Errorf("mount overlay for %s: %w", node, err)
		}
		return true, nil
	}

	if err := m.makeDirs(id); err != nil {
		return false, fmt.Errorf("mount overlay for %s: %w", node, err)
	}
	source, fstype, opts, err := m.mountArgs(p)
	if err != nil {
		return false, fmt.Errorf("mount overlay for %s: %w", node, err)
	}
	if err := mountSyscall(source, p.Mount, fstype, opts); err != nil {
		return false, fmt.Errorf("mount overlay for %s: %w", node, err)
	}
	// The kernel falls back to nfs_export=off with only a warning in
	// dmesg (e.g. when a layer cannot encode file handles); such a root
	// would fail later at export time with an obscure error. Whether it
	// does depends on the filesystems of the layers, which every node
	// shares, so the first mount of this process is checked in the mount
	// table, and later ones only by statx.
	if m.verified.Load() {
		if root, err := isMountRoot(p.Mount); err != nil || !root {
			if err == nil {
				err = fmt.Errorf("%s is not a mount point after mounting it", p.Mount)
			}
			return false, fmt.Errorf("mount overlay for %s: %w", node, err)
		}
		return false, nil
	}
	info, err = mountAt(p.Mount)
	if err == nil && info == nil {
		err = fmt.Errorf("%s is not in the mount table after mounting it", p.Mount)
	}
	if err == nil {
		err = checkMounted(info, p)
	}
	if err != nil {
		if uerr := unmountSyscall(p.Mount, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("unmount it again: %w", uerr))
		}
		return false, fmt.Errorf("mount overlay for %s with options %s (see dmesg): %w", node, opts, err)
	}
	m.verified.Store(true)
	return false, nil
}

// Mounted reports whether node's overlay is mounted at its mount point. Any
// other filesystem mounted there is an error.
func (m *Manager) Mounted(id node.ID) (bool, error) {
	node := id.String()
	p, err := m.Paths(id)
	if err != nil {
		return false, err
	}
	info, err := mountAt(p.Mount)
	if err != nil {
		return false, fmt.Errorf("check overlay of %s: %w", node, err)
	}
	if info == nil {
		return false, nil
	}
	if err := checkMounted(info, p); err != nil {
		return false, fmt.Errorf("check overlay of %s: %w", node, err)
	}
	return true, nil
}

// MountedNodes reads the mount table once and returns the nodes under
// NodeDir whose overlay is mounted and would be adopted by Mount. Start-up
// uses it to restore hundreds of nodes without a mount-table read each.
func (m *Manager) MountedNodes() (map[node.ID]bool, error) {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(m.nodeDir))
	if err != nil {
		return nil, fmt.Errorf("list mounted overlays: read mount table: %w", err)
	}
	nodes := make(map[node.ID]bool)
	for mp, info := range topMounts(infos) {
		if filepath.Dir(mp) != m.nodeDir {
			continue
		}
		// Only the canonical name is ours: a "c0a80102" or "10.0.0.1"
		// directory under node_dir was made by someone else.
		id, err := node.ParseHex(filepath.Base(mp))
		if err != nil || id.String() != filepath.Base(mp) {
			continue
		}
		p, _ := m.Paths(id)
		if checkMounted(info, p) == nil {
			nodes[id] = true
		}
	}
	return nodes, nil
}

// Unmount unmounts node's overlay. A node that is not mounted is not an
// error. A busy overlay (a process or an NFS export still using it) gives an
// error wrapping unix.EBUSY and stays mounted: whether to detach it is the
// caller's decision, see UnmountDetach.
func (m *Manager) Unmount(id node.ID) error {
	return m.unmount(id, 0)
}

// UnmountDetach detaches node's overlay lazily (MNT_DETACH): it disappears
// from the mount point at once and is released when its last user goes.
func (m *Manager) UnmountDetach(id node.ID) error {
	return m.unmount(id, unix.MNT_DETACH)
}

func (m *Manager) unmount(id node.ID, flags int) error {
	node := id.String()
	p, err := m.Paths(id)
	if err != nil {
		return fmt.Errorf("unmount overlay: %w", err)
	}
	defer m.lock(id)()

	for range maxStacked {
		info, err := mountAt(p.Mount)
		if err != nil {
			return fmt.Errorf("unmount overlay for %s: %w", node, err)
		}
		if info == nil {
			return nil
		}
		if !isOverlay(info.FSType) {
			return fmt.Errorf("unmount overlay for %s: %s has a %s filesystem mounted on it, not an overlay; leaving it alone", node, p.Mount, info.FSType)
		}
		err = unmountSyscall(p.Mount, flags)
		// EINVAL: someone else unmounted it between our look and the
		// syscall; look again.
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount overlay for %s at %s: %w", node, p.Mount, err)
		}
	}
	return fmt.Errorf("unmount overlay for %s: %s still has an overlay mounted after %d unmounts", node, p.Mount, maxStacked)
}

// refuseMounted returns an error if anything is mounted at p.Mount.
func refuseMounted(op, node string, p Paths) error {
	info, err := mountAt(p.Mount)
	if err != nil {
		return fmt.Errorf("%s overlay of %s: %w", op, node, err)
	}
	if info != nil {
		return fmt.Errorf("%s overlay of %s: refusing while %s is mounted at %s; unmount it first", op, node, info.FSType, p.Mount)
	}
	return nil
}

// Wipe resets node's overlay to the golden root by moving its upper and
// work directories aside (upper.reset-<unixnano>, work.reset-<unixnano>) and
// creating empty ones. It refuses while the node is mounted. Only the
// caller decides when; nothing here wipes on its own.
//
// Wipe deletes nothing: renames are atomic and instant, so the node can be
// mounted and exported again at once, and the caller deletes the returned
// directories afterwards with Discard, however long that takes. They
// include what an earlier, interrupted reset of the node set aside (it was
// condemned by an explicit request too). A crash at any point leaves
// either the old upper or an empty one, never a half-deleted one in use;
// Leftovers finds what a crash left set aside.
func (m *Manager) Wipe(id node.ID) (aside []string, err error) {
	node := id.String()
	p, err := m.Paths(id)
	if err != nil {
		return nil, fmt.Errorf("wipe overlay: %w", err)
	}
	defer m.lock(id)()
	if err := refuseMounted("wipe", node, p); err != nil {
		return nil, err
	}
	if err := mkdirChain(m.overlayDir, []string{node}, []os.FileMode{nodeDirMode}); err != nil {
		return nil, fmt.Errorf("wipe overlay of %s: %w", node, err)
	}
	stamp := time.Now().UnixNano()
	for _, dir := range []string{p.Upper, p.Work} {
		aside := fmt.Sprintf("%s%s%d", dir, resetInfix, stamp)
		if err := os.Rename(dir, aside); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("wipe overlay of %s: move %s aside: %w", node, dir, err)
		}
	}
	if err := mkdirChain(m.overlayDir, []string{node, "upper"}, []os.FileMode{nodeDirMode, upperDirMode}); err != nil {
		return nil, fmt.Errorf("wipe overlay of %s: recreate upper dir: %w", node, err)
	}
	if err := mkdirChain(m.overlayDir, []string{node, "work"}, []os.FileMode{nodeDirMode, workDirMode}); err != nil {
		return nil, fmt.Errorf("wipe overlay of %s: recreate work dir: %w", node, err)
	}
	aside, err = filepath.Glob(filepath.Join(filepath.Dir(p.Upper), "*"+resetInfix+"*"))
	if err != nil {
		return nil, fmt.Errorf("wipe overlay of %s: %w", node, err)
	}
	return aside, nil
}

// resetInfix marks a directory Wipe moved aside: NAME.reset-UNIXNANO.
const resetInfix = ".reset-"

// Leftovers lists every directory Wipe moved aside that is still there,
// for every node: a daemon killed while deleting them leaves some.
func (m *Manager) Leftovers() ([]string, error) {
	dirs, err := filepath.Glob(filepath.Join(m.overlayDir, "*", "*"+resetInfix+"*"))
	if err != nil {
		return nil, fmt.Errorf("list reset leftovers: %w", err)
	}
	return dirs, nil
}

// Discard deletes directories that Wipe moved aside. It refuses any other
// path: only what an explicit reset condemned is ever deleted here.
func (m *Manager) Discard(dirs []string) error {
	var errs []error
	for _, dir := range dirs {
		rel, err := filepath.Rel(m.overlayDir, dir)
		parts := strings.Split(rel, string(filepath.Separator))
		if err != nil || len(parts) != 2 || !strings.Contains(parts[1], resetInfix) ||
			!(strings.HasPrefix(parts[1], "upper"+resetInfix) || strings.HasPrefix(parts[1], "work"+resetInfix)) {
			errs = append(errs, fmt.Errorf("discard %s: not a directory set aside by a reset; refusing to delete it", dir))
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("discard %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// Remove deletes node's overlay directories and its (empty) mount point, for
// purging a node for good. It refuses while the node is mounted, and leaves
// everything in place if the mount point is not empty: something was
// written into the bare directory, and only a person should delete it.
func (m *Manager) Remove(id node.ID) error {
	node := id.String()
	p, err := m.Paths(id)
	if err != nil {
		return fmt.Errorf("remove overlay: %w", err)
	}
	defer m.lock(id)()
	if err := refuseMounted("remove", node, p); err != nil {
		return err
	}
	if err := os.Remove(p.Mount); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove overlay of %s: remove mount point: %w", node, err)
	}
	if err := os.RemoveAll(filepath.Dir(p.Upper)); err != nil {
		return fmt.Errorf("remove overlay of %s: %w", node, err)
	}
	return nil
}
