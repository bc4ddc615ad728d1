package fs

import (
	"context"
	"errors"
	"slices"
	"syscall"
	"testing"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// The tests in this file call the FUSE methods directly, without a mount
// (STYLE tier 1): no root, no kernel, and each errno is seen as returned.

// directRoot returns src's root node, initialised as a mount would (so
// NewInode works) but not mounted.
func directRoot(t *testing.T, src Source) *root {
	t.Helper()
	r := NewRoot(src).(*root)
	fusefs.NewNodeFS(r, &fusefs.Options{})
	return r
}

func TestDirectLookupGetattrOpenRead(t *testing.T) {
	src := &fakeSource{files: map[string][]byte{"C0A80102": []byte("LABEL linux\n"), "default": []byte("DEFAULT local\n")}}
	r := directRoot(t, src)
	ctx := context.Background()

	var out fuse.EntryOut
	ch, errno := r.Lookup(ctx, "C0A80102", &out)
	if errno != 0 {
		t.Fatalf("Lookup = %v", errno)
	}
	if out.Attr.Size != uint64(len("LABEL linux\n")) || out.Attr.Mode != syscall.S_IFREG|0o444 {
		t.Errorf("Lookup attr size %d mode %o", out.Attr.Size, out.Attr.Mode)
	}
	f := ch.Operations().(*file)
	var ao fuse.AttrOut
	if errno := f.Getattr(ctx, nil, &ao); errno != 0 || ao.Attr.Size != out.Attr.Size || ao.Attr.Ino != out.Attr.Ino {
		t.Errorf("Getattr = %v, size %d ino %d; want the Lookup's", errno, ao.Attr.Size, ao.Attr.Ino)
	}
	fh, _, errno := f.Open(ctx, syscall.O_RDONLY)
	if errno != 0 {
		t.Fatalf("Open = %v", errno)
	}
	buf := make([]byte, 5)
	res, errno := fh.(*handle).Read(ctx, buf, 6)
	if errno != 0 {
		t.Fatalf("Read = %v", errno)
	}
	if b, _ := res.Bytes(buf); string(b) != "linux" {
		t.Errorf("Read at 6 = %q, want %q", b, "linux")
	}
	if res, _ := fh.(*handle).Read(ctx, buf, 100); res.Size() != 0 {
		t.Errorf("Read past the end returned %d bytes", res.Size())
	}
	// The content changes: the open handle keeps what it rendered.
	src.set("C0A80102", "changed\n")
	if res, _ := fh.(*handle).Read(ctx, make([]byte, 64), 0); res.Size() != len("LABEL linux\n") {
		t.Errorf("open handle sees %d bytes after a change, want the %d it opened with", res.Size(), len("LABEL linux\n"))
	}
	// The inode is that version: its attributes stay, and a new open of
	// it is stale (the kernel then looks the name up again).
	if errno := f.Getattr(ctx, nil, &ao); errno != 0 || ao.Attr.Size != uint64(len("LABEL linux\n")) {
		t.Errorf("Getattr of the old version after change: %v, size %d", errno, ao.Attr.Size)
	}
	if _, _, errno := f.Open(ctx, syscall.O_RDONLY); errno != syscall.ESTALE {
		t.Errorf("Open of the old version after change = %v, want ESTALE", errno)
	}
	var out2 fuse.EntryOut
	if _, errno := r.Lookup(ctx, "C0A80102", &out2); errno != 0 || out2.Attr.Size != uint64(len("changed\n")) || out2.Attr.Ino == out.Attr.Ino {
		t.Errorf("Lookup after change = %v, size %d, ino %x (old %x); want the new version's inode", errno, out2.Attr.Size, out2.Attr.Ino, out.Attr.Ino)
	}
}

func TestDirectErrnos(t *testing.T) {
	src := &fakeSource{files: map[string][]byte{"x": []byte("x")}}
	r := directRoot(t, src)
	ctx := context.Background()
	var eo fuse.EntryOut
	if _, errno := r.Lookup(ctx, "missing", &eo); errno != syscall.ENOENT {
		t.Errorf("Lookup(missing) = %v, want ENOENT", errno)
	}
	ch, _ := r.Lookup(ctx, "x", &eo)
	f := ch.Operations().(*file)
	for _, flags := range []uint32{syscall.O_WRONLY, syscall.O_RDWR, syscall.O_RDONLY | syscall.O_TRUNC, syscall.O_WRONLY | syscall.O_APPEND} {
		if _, _, errno := f.Open(ctx, flags); errno != syscall.EROFS {
			t.Errorf("Open(%#o) = %v, want EROFS", flags, errno)
		}
	}
	src.openErr = errors.New("exportfs failed")
	if _, _, errno := f.Open(ctx, syscall.O_RDONLY); errno != syscall.EIO {
		t.Errorf("Open with a failing source = %v, want EIO", errno)
	}
	src.openErr = context.Canceled
	if _, _, errno := f.Open(ctx, syscall.O_RDONLY); errno != syscall.EINTR {
		t.Errorf("Open interrupted = %v, want EINTR", errno)
	}
	var ao fuse.AttrOut
	if errno := f.Setattr(ctx, nil, &fuse.SetAttrIn{}, &ao); errno != syscall.EROFS {
		t.Errorf("Setattr = %v, want EROFS", errno)
	}
	writes := map[string]func() syscall.Errno{
		"Create": func() syscall.Errno { _, _, _, e := r.Create(ctx, "n", 0, 0o644, &eo); return e },
		"Mkdir":  func() syscall.Errno { _, e := r.Mkdir(ctx, "n", 0o755, &eo); return e },
		"Mknod":  func() syscall.Errno { _, e := r.Mknod(ctx, "n", 0, 0, &eo); return e },
		"Unlink": func() syscall.Errno { return r.Unlink(ctx, "x") },
		"Rmdir":  func() syscall.Errno { return r.Rmdir(ctx, "x") },
		"Rename": func() syscall.Errno { return r.Rename(ctx, "x", r, "y", 0) },
		"Symlink": func() syscall.Errno {
			_, e := r.Symlink(ctx, "/etc/passwd", "n", &eo)
			return e
		},
		"Link":    func() syscall.Errno { _, e := r.Link(ctx, f, "n", &eo); return e },
		"Setattr": func() syscall.Errno { return r.Setattr(ctx, nil, &fuse.SetAttrIn{}, &ao) },
	}
	for name, op := range writes {
		if errno := op(); errno != syscall.EROFS {
			t.Errorf("%s = %v, want EROFS", name, errno)
		}
	}
}

func TestDirectReaddirAndByIP(t *testing.T) {
	src := &fakeSource{
		files: map[string][]byte{"default": []byte("d"), "C0A80102": []byte("n")},
		nodes: []node.Node{{ID: node.MustParse("C0A80102")}},
	}
	r := directRoot(t, src)
	ctx := context.Background()
	ds, errno := r.Readdir(ctx)
	if errno != 0 {
		t.Fatal(errno)
	}
	var names []string
	for ds.HasNext() {
		e, errno := ds.Next()
		if errno != 0 {
			t.Fatal(errno)
		}
		names = append(names, e.Name)
	}
	if want := []string{"C0A80102", "by-ip", "default"}; !slices.Equal(names, want) {
		t.Errorf("Readdir = %q, want %q", names, want)
	}
	var eo fuse.EntryOut
	dir, errno := r.Lookup(ctx, byIPName, &eo)
	if errno != 0 {
		t.Fatalf("Lookup(by-ip) = %v", errno)
	}
	b := dir.Operations().(*byIP)
	lnk, errno := b.Lookup(ctx, "192.168.1.2", &eo)
	if errno != 0 {
		t.Fatalf("Lookup(by-ip/192.168.1.2) = %v", errno)
	}
	target, errno := lnk.Operations().(*link).Readlink(ctx)
	if errno != 0 || string(target) != "/netboot/node/C0A80102" {
		t.Errorf("Readlink = %q, %v", target, errno)
	}
	for _, name := range []string{"192.168.1.3", "192.168.001.002", "C0A80102", "..", ""} {
		if _, errno := b.Lookup(ctx, name, &eo); errno != syscall.ENOENT {
			t.Errorf("by-ip Lookup(%q) = %v, want ENOENT", name, errno)
		}
	}
}
