package roots

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The bootability checks of an import: a short list, each refusing with
// what to fix (force imports anyway), or noting what the admin should know.
// They look at the tree only, the way the node will see it as its root:
//
//  1. An init: /sbin/init or /init (or, for a container image, the program
//     its config names as entrypoint or command) exists in the tree,
//     symlinks followed inside the tree. Without one the kernel panics.
//  2. /etc/fstab mounts nothing on / (a root device such as UUID=… or
//     /dev/sda1): a diskless node's root is its NFS export, and such a line
//     makes its init fail or remount the root.
//  3. Noted, not refused: how the node's kernel can mount an NFS root: built
//     in (CONFIG_ROOT_NFS=y in boot/config-VERSION), an nfs module in
//     lib/modules/VERSION for the initrd to load, or neither found; and
//     that a tree with no kernel boots a kernel from `pxebootfs image`.
//
// The kernel and its modules are checked by findKernel.

// checkBootable runs the checks on the tree at root; cf is the image's
// config (nil for a directory or tar).
func checkBootable(root string, cf *v1.ConfigFile, force bool) (notes []string, err error) {
	var problems []string
	inits := []string{"/sbin/init", "/init"}
	if cf != nil {
		for _, args := range [][]string{cf.Config.Entrypoint, cf.Config.Cmd} {
			if len(args) > 0 && strings.HasPrefix(args[0], "/") {
				inits = append(inits, args[0])
			}
		}
	}
	if !slices.ContainsFunc(inits, func(p string) bool { return existsIn(root, p) }) {
		problems = append(problems, fmt.Sprintf("no init: none of %s is a file in the tree (the kernel would panic at boot)", strings.Join(inits, ", ")))
	}
	if line, dev := fstabRoot(root); line > 0 {
		problems = append(problems, fmt.Sprintf("etc/fstab line %d mounts / from %s: a diskless node's root is its NFS export; remove the line", line, dev))
	}
	notes = nfsNotes(root)
	if len(problems) > 0 && !force {
		return notes, fmt.Errorf("the tree would not boot a diskless node (-force imports it anyway):\n  %s", strings.Join(problems, "\n  "))
	}
	for _, p := range problems {
		notes = append(notes, "imported with -force: "+p)
	}
	return notes, nil
}

// existsIn reports whether p names a regular file inside root, following
// symlinks as the node would (absolute targets from root), at most 16.
func existsIn(root, p string) bool {
	cur := path.Clean("/" + p)
	for range 16 {
		fi, err := os.Lstat(filepath.Join(root, cur))
		if err != nil {
			// A symlinked directory on the way (/lib -> usr/lib):
			// resolve the longest existing prefix instead.
			next, ok := resolveParent(root, cur)
			if !ok {
				return false
			}
			cur = next
			continue
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return fi.Mode().IsRegular()
		}
		t, err := os.Readlink(filepath.Join(root, cur))
		if err != nil {
			return false
		}
		if !strings.HasPrefix(t, "/") {
			t = path.Join(path.Dir(cur), t)
		}
		cur = path.Clean("/" + t)
	}
	return false
}

// resolveParent replaces the first symlink among p's directories by its
// target (inside root); ok false when there is none to replace.
func resolveParent(root, p string) (string, bool) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i := 1; i < len(parts); i++ {
		dir := "/" + strings.Join(parts[:i], "/")
		fi, err := os.Lstat(filepath.Join(root, dir))
		if err != nil {
			return "", false
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			t, err := os.Readlink(filepath.Join(root, dir))
			if err != nil {
				return "", false
			}
			if !strings.HasPrefix(t, "/") {
				t = path.Join(path.Dir(dir), t)
			}
			return path.Clean("/" + t + "/" + strings.Join(parts[i:], "/")), true
		}
	}
	return "", false
}

// fstabRoot finds an etc/fstab line that mounts a device on /.
func fstabRoot(root string) (line int, device string) {
	f, err := os.Open(filepath.Join(root, "etc", "fstab"))
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || strings.HasPrefix(fields[0], "#") || fields[1] != "/" {
			continue
		}
		switch fields[2] {
		case "nfs", "nfs4", "tmpfs", "overlay", "rootfs", "none":
			continue
		}
		return n, fields[0]
	}
	return 0, ""
}

// nfsNotes says how the tree's kernel can mount an NFS root.
func nfsNotes(root string) []string {
	boot, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(boot) == 0 {
		return []string{"no kernel in the tree (boot/vmlinuz-*): nodes boot a kernel from `pxebootfs image`, whose initrd must mount the NFS root"}
	}
	var notes []string
	for _, k := range boot {
		v := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		switch {
		case grepFile(filepath.Join(root, "boot", "config-"+v), "CONFIG_ROOT_NFS=y"):
			notes = append(notes, "kernel "+v+": NFS root built in (CONFIG_ROOT_NFS=y)")
		case hasNFSModule(root, v):
			notes = append(notes, "kernel "+v+": NFS client as a module (nfs.ko): its initrd must load it to mount the root")
		default:
			notes = append(notes, "kernel "+v+": no NFS client found (neither CONFIG_ROOT_NFS=y in boot/config-"+v+" nor nfs.ko in its modules): check that its initrd can mount an NFS root")
		}
	}
	return notes
}

func hasNFSModule(root, v string) bool {
	for _, d := range []string{"usr/lib/modules", "lib/modules"} {
		m, _ := filepath.Glob(filepath.Join(root, d, v, "kernel", "fs", "nfs", "nfs.ko*"))
		if len(m) > 0 {
			return true
		}
	}
	return false
}

func grepFile(p, s string) bool {
	b, err := os.ReadFile(p)
	return err == nil && strings.Contains(string(b), s)
}
