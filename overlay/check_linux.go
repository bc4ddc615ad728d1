package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Check proves that node overlays can work here, for `pxebootfs check`: in
// a temporary directory under OverlayDir (or, while OverlayDir does not
// exist yet, under its nearest existing parent: the filesystem `pxebootfs
// mount` will create it on) it mounts an overlay of RootDir with the
// options Mount uses, writes a file through it, checks the file landed in
// the upper dir and not in the golden root, unmounts and cleans up. The
// error says which step failed. It leaves nothing behind.
func (m *Manager) Check() (err error) {
	parent := existingParent(m.overlayDir)
	dir, err := os.MkdirTemp(parent, ".pxebootfs-check-")
	if err != nil {
		return fmt.Errorf("overlay check: create temporary dir under %s: %w", parent, err)
	}
	p := Paths{
		Mount: filepath.Join(dir, "merged"),
		Upper: filepath.Join(dir, "upper"),
		Work:  filepath.Join(dir, "work"),
		Lower: m.rootDir,
	}
	mounted := false
	defer func() {
		if mounted {
			// Only on an earlier failure; detach so that a busy
			// mount cannot keep the check from returning.
			if uerr := unmountSyscall(p.Mount, unix.MNT_DETACH); uerr != nil {
				err = errors.Join(err, fmt.Errorf("overlay check: detach %s: %w", p.Mount, uerr))
				return // never delete under a mount
			}
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("overlay check: remove %s: %w", dir, rerr))
		}
	}()

	names := []string{"merged", "upper", "work"}
	if p.Lower == "" {
		// Only named roots: their generations are checked when made;
		// an empty lower proves the rest.
		p.Lower = filepath.Join(dir, "lower")
		names = append(names, "lower")
	}
	for _, name := range names {
		mode := os.FileMode(upperDirMode)
		if name == "work" {
			mode = workDirMode
		}
		if err := mkdirChain(dir, []string{name}, []os.FileMode{mode}); err != nil {
			return fmt.Errorf("overlay check: %w", err)
		}
	}
	if err := sameFilesystem(p.Upper, p.Work); err != nil {
		return fmt.Errorf("overlay check: %w", err)
	}

	source, fstype, opts, err := m.mountArgs(p)
	if err != nil {
		return fmt.Errorf("overlay check: %w", err)
	}
	if err := mountSyscall(source, p.Mount, fstype, opts); err != nil {
		return fmt.Errorf("overlay check: test mount of %s under %s: %w", m.rootDir, m.overlayDir, err)
	}
	mounted = true
	info, err := mountAt(p.Mount)
	if err == nil && info == nil {
		err = fmt.Errorf("%s is not in the mount table after mounting it", p.Mount)
	}
	if err == nil {
		err = checkMounted(info, p)
	}
	if err != nil {
		return fmt.Errorf("overlay check: test mount with options %s (see dmesg): %w", opts, err)
	}

	name := filepath.Base(dir)
	want := []byte("pxebootfs overlay check\n")
	if err := os.WriteFile(filepath.Join(p.Mount, name), want, 0o644); err != nil {
		return fmt.Errorf("overlay check: write through the test overlay: %w", err)
	}
	if got, err := os.ReadFile(filepath.Join(p.Upper, name)); err != nil {
		return fmt.Errorf("overlay check: file written through the test overlay is not in its upper dir: %w", err)
	} else if !bytes.Equal(got, want) {
		return fmt.Errorf("overlay check: upper dir holds %q, wrote %q", got, want)
	}
	if _, err := os.Lstat(filepath.Join(m.rootDir, name)); err == nil {
		return fmt.Errorf("overlay check: file written through the test overlay reached the golden root %s", m.rootDir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("overlay check: look for the test file in the golden root: %w", err)
	}

	if err := unmountSyscall(p.Mount, 0); err != nil {
		return fmt.Errorf("overlay check: unmount test overlay %s: %w", p.Mount, err)
	}
	mounted = false
	return nil
}

// sameFilesystem checks that a and b are on one filesystem, as overlayfs
// requires of upper and work.
func sameFilesystem(a, b string) error {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return fmt.Errorf("stat %s: %w", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		return fmt.Errorf("stat %s: %w", b, err)
	}
	if sa.Dev != sb.Dev {
		return fmt.Errorf("%s and %s are on different filesystems (devices %d:%d and %d:%d); overlayfs needs upper and work on one",
			a, b, unix.Major(sa.Dev), unix.Minor(sa.Dev), unix.Major(sb.Dev), unix.Minor(sb.Dev))
	}
	return nil
}

// existingParent is dir, or its nearest ancestor that exists.
func existingParent(dir string) string {
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil || filepath.Dir(p) == p {
			return p
		}
	}
}
