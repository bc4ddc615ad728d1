package roots

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// The tests seal generations with bind mounts: they run in the private
// mount namespace IsolateNFSState makes, so nothing outlives them.
func TestMain(m *testing.M) { os.Exit(testenv.IsolateNFSState(m)) }

// newStore makes a store in a temp dir whose generations are unsealed
// before the temp dir is removed.
func newStore(t *testing.T) *Store {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireNFSIsolation(t)
	base := t.TempDir()
	s := New(filepath.Join(base, "roots"), filepath.Join(base, "state"), "")
	t.Cleanup(func() {
		matches, _ := filepath.Glob(filepath.Join(s.dir, "*", "*"))
		for _, m := range matches {
			if err := unseal(m); err != nil {
				t.Errorf("unseal %s: %v", m, err)
			}
		}
	})
	return s
}

// makeTree builds a source tree with every kind of entry an OS root has.
func makeTree(t *testing.T, dir string, files int) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "usr/bin"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "many"), 0o750))
	must(os.MkdirAll(filepath.Join(dir, "sbin"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "sbin/init"), []byte("#!/bin/sh\n"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "etc/pxebootfs-root"), []byte("gen-1\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "usr/bin/ping"), []byte("\x7fELF ping"), 0o755))
	must(unix.Chmod(filepath.Join(dir, "usr/bin/ping"), 0o4755))
	must(os.Link(filepath.Join(dir, "usr/bin/ping"), filepath.Join(dir, "usr/bin/ping6")))
	must(os.Symlink("/etc/shadow", filepath.Join(dir, "etc/outside")))
	must(os.Symlink("../usr/bin/ping", filepath.Join(dir, "etc/inside")))
	must(unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	must(os.Chown(filepath.Join(dir, "etc/pxebootfs-root"), 1234, 5678))
	must(unix.Setxattr(filepath.Join(dir, "usr/bin/ping"), "security.capability",
		[]byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0))
	must(unix.Setxattr(filepath.Join(dir, "etc/pxebootfs-root"), "user.note", []byte("hello"), 0))
	must(unix.Setxattr(filepath.Join(dir, "etc/pxebootfs-root"), "system.posix_acl_access", testACL, 0))
	sparse, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	must(sparse.Truncate(64 << 20))
	_, err = sparse.WriteAt([]byte("end"), 64<<20-3)
	must(err)
	must(sparse.Close())
	for i := range files {
		must(os.WriteFile(filepath.Join(dir, "many", fmt.Sprintf("f%04d", i)), []byte(fmt.Sprint(i)), 0o640))
	}
}

// testACL is a POSIX access ACL in its xattr form (version 2, then tag,
// perm, id entries): user::rw-, user:1000:r--, group::r--, mask::r--,
// other::r--.
var testACL = func() []byte {
	b := []byte{2, 0, 0, 0}
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{1, 6, 0xffffffff}, {2, 4, 1000}, {4, 4, 0xffffffff}, {0x10, 4, 0xffffffff}, {0x20, 4, 0xffffffff}} {
		b = append(b, byte(e.tag), byte(e.tag>>8), byte(e.perm), byte(e.perm>>8),
			byte(e.id), byte(e.id>>8), byte(e.id>>16), byte(e.id>>24))
	}
	return b
}()

// writeInit gives a tree the init the bootability check looks for.
func writeInit(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "sbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sbin", "init"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestImportDirectory(t *testing.T) {
	s := newStore(t)
	src := t.TempDir()
	makeTree(t, src, 2000)
	res, err := s.Import(context.Background(), ImportOptions{Name: "debian", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.Previous != "" || CheckGen(res.Gen) != nil {
		t.Fatalf("result %+v", res)
	}
	gen := filepath.Join(s.dir, "debian", res.Gen)
	checkTree(t, gen, 2000)

	// Enforced immutability: even root cannot write into it.
	if ro, err := sealed(gen); err != nil || !ro {
		t.Errorf("generation sealed = %v, %v", ro, err)
	}
	if err := os.WriteFile(filepath.Join(gen, "etc/new"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing into a generation: %v, want EROFS", err)
	}

	// The same tree again creates nothing.
	again, err := s.Import(context.Background(), ImportOptions{Name: "debian", Source: src})
	if err != nil || again.Created || again.Gen != res.Gen {
		t.Errorf("second import: %+v, %v; want the same generation, not created", again, err)
	}
	if left, _ := os.ReadDir(filepath.Join(s.dir, stagingDir)); len(left) != 0 {
		t.Errorf("staging left: %v", left)
	}

	// A changed tree is a new generation and becomes current.
	if err := os.WriteFile(filepath.Join(src, "etc/pxebootfs-root"), []byte("gen-2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res2, err := s.Import(context.Background(), ImportOptions{Name: "debian", Source: src})
	if err != nil || !res2.Created || res2.Gen == res.Gen || res2.Previous != res.Gen {
		t.Fatalf("third import: %+v, %v", res2, err)
	}
	if p, err := s.Current("debian"); err != nil || p.Gen != res2.Gen {
		t.Errorf("current = %v, %v; want %s", p, err, res2.Gen)
	}
}

// checkTree checks what makeTree made, as imported.
func checkTree(t *testing.T, gen string, files int) {
	t.Helper()
	var st, st6 unix.Stat_t
	if err := unix.Lstat(filepath.Join(gen, "usr/bin/ping"), &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(gen, "usr/bin/ping6"), &st6); err != nil {
		t.Fatal(err)
	}
	if st.Ino != st6.Ino || st.Mode&0o7777 != 0o4755 {
		t.Errorf("ping: ino %d vs ping6 %d (want one hard-linked inode), mode %o (want setuid 4755)", st.Ino, st6.Ino, st.Mode&0o7777)
	}
	if v, err := getXattr(filepath.Join(gen, "usr/bin/ping"), "security.capability"); err != nil || len(v) != 20 {
		t.Errorf("security.capability: %d bytes, %v", len(v), err)
	}
	if v, err := getXattr(filepath.Join(gen, "etc/pxebootfs-root"), "user.note"); err != nil || string(v) != "hello" {
		t.Errorf("user.note = %q, %v", v, err)
	}
	if v, err := getXattr(filepath.Join(gen, "etc/pxebootfs-root"), "system.posix_acl_access"); err != nil || !bytes.Equal(v, testACL) {
		t.Errorf("ACL = %x, %v; want %x", v, err, testACL)
	}
	if err := unix.Lstat(filepath.Join(gen, "etc/pxebootfs-root"), &st); err != nil || st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("owner %d:%d, %v; want 1234:5678", st.Uid, st.Gid, err)
	}
	if l, err := os.Readlink(filepath.Join(gen, "etc/outside")); err != nil || l != "/etc/shadow" {
		t.Errorf("symlink outside = %q, %v", l, err)
	}
	if err := unix.Lstat(filepath.Join(gen, "null"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("null: mode %o rdev %d, %v", st.Mode, st.Rdev, err)
	}
	if err := unix.Lstat(filepath.Join(gen, "fifo"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo: mode %o, %v", st.Mode, err)
	}
	if err := unix.Lstat(filepath.Join(gen, "sparse"), &st); err != nil || st.Size != 64<<20 || st.Blocks*512 > 1<<20 {
		t.Errorf("sparse: size %d, %d bytes allocated (want holes), %v", st.Size, st.Blocks*512, err)
	}
	if ents, err := os.ReadDir(filepath.Join(gen, "many")); err != nil || len(ents) != files {
		t.Errorf("many: %d entries, %v", len(ents), err)
	}
	if fi, err := os.Stat(filepath.Join(gen, "many")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("many: %v, %v; want 0750", fi.Mode(), err)
	}
}

func getXattr(p, name string) ([]byte, error) {
	b := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, b)
	if err != nil {
		return nil, err
	}
	return b[:n], nil
}

// TestImportArchives: a tar of the tree, plain, gzip and zstd (made by GNU
// tar, as an admin would), is the same generation as the tree itself.
func TestImportArchives(t *testing.T) {
	s := newStore(t)
	src := t.TempDir()
	makeTree(t, src, 50)
	fromDir, err := s.Import(context.Background(), ImportOptions{Name: "dir", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(t.TempDir(), "root.tar")
	out, err := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--acls", "--sparse", "--numeric-owner", "-C", src, "-cf", tarball, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	data, err := os.ReadFile(tarball)
	if err != nil {
		t.Fatal(err)
	}
	var gz, zs bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	zsw, _ := zstd.NewWriter(&zs)
	zsw.Write(data)
	zsw.Close()
	for _, tt := range []struct {
		name string
		data []byte
	}{{"plain", data}, {"gzip", gz.Bytes()}, {"zstd", zs.Bytes()}} {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "root")
			if err := os.WriteFile(f, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			res, err := s.Import(context.Background(), ImportOptions{Name: "tar-" + tt.name, Source: f})
			if err != nil {
				t.Fatal(err)
			}
			if res.Gen != fromDir.Gen {
				t.Errorf("generation %s, want the directory's %s", res.Gen, fromDir.Gen)
			}
			checkTree(t, filepath.Join(s.dir, "tar-"+tt.name, res.Gen), 50)
		})
	}
}

// tarOf builds an archive from headers and bodies, as a hostile archive
// would be made.
func tarOf(t *testing.T, members ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; i < len(members); i += 2 {
		h := members[i].(*tar.Header)
		body := members[i+1].(string)
		if h.Size == 0 && h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if body != "" {
			tw.Write([]byte(body))
		}
	}
	tw.Close()
	return b.Bytes()
}

func TestHostileArchives(t *testing.T) {
	s := newStore(t)
	outside := t.TempDir()
	reg := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg} }
	good := tarOf(t, &tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, "", reg("etc/a"), "aaaa")
	// A member larger than declared: its header says 10 bytes, 600
	// follow, and the rest is read where the next header should be.
	larger := tarOf(t, reg("a"), strings.Repeat("X", 600))
	copy(larger[124:136], fmt.Sprintf("%011o\x00", 10))
	copy(larger[148:156], "        ")
	var sum int
	for _, c := range larger[:512] {
		sum += int(c)
	}
	copy(larger[148:156], fmt.Sprintf("%06o\x00 ", sum))
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"dotdot", tarOf(t, reg("../escape"), "x"), `".." is not allowed`},
		{"dotdot inside", tarOf(t, reg("etc/../../escape"), "x"), `".." is not allowed`},
		{"absolute", tarOf(t, reg("/tmp/escape"), "x"), "absolute names"},
		{"through a symlink", tarOf(t, &tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside}, "", reg("link/escape"), "x"), "its directory"},
		{"hard link out", tarOf(t, &tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}, ""), "hard link"},
		{"hard link through a symlink", tarOf(t, &tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}, "", &tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "l"}, ""), "hard link"},
		{"truncated", good[:len(good)-1024-300], "unexpected EOF"},
		{"larger than declared", larger, "tar"},
		{"not an archive", []byte("hello, world"), "tar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "evil.tar")
			if err := os.WriteFile(f, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := s.Import(context.Background(), ImportOptions{Name: "evil", Source: f})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("created outside: %v", ents)
			}
			if _, err := os.Stat(filepath.Join(s.dir, "evil")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("roots_dir/evil exists after a failed import: %v", err)
			}
			if left, _ := os.ReadDir(filepath.Join(s.dir, stagingDir)); len(left) != 0 {
				t.Errorf("staging left: %v", left)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.dir), "escape")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("escape was created: %v", err)
	}
}

func TestKernelCheck(t *testing.T) {
	s := newStore(t)
	src := t.TempDir()
	writeInit(t, src)
	for _, d := range []string{"boot", "usr/lib/modules/6.1.0-9-amd64"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	for _, f := range []string{"boot/vmlinuz-6.1.0-9-amd64", "boot/initrd.img-6.1.0-9-amd64"} {
		os.WriteFile(filepath.Join(src, f), []byte(f), 0o644)
	}
	res, err := s.Import(context.Background(), ImportOptions{Name: "k", Source: src})
	if err != nil || res.Kernel != "boot/vmlinuz-6.1.0-9-amd64" || res.Initrd != "boot/initrd.img-6.1.0-9-amd64" {
		t.Fatalf("import: %+v, %v", res, err)
	}
	// A newer kernel without its modules is refused, and nothing is made.
	os.WriteFile(filepath.Join(src, "boot/vmlinuz-6.1.0-10-amd64"), []byte("k"), 0o644)
	_, err = s.Import(context.Background(), ImportOptions{Name: "k", Source: src})
	if err == nil || !strings.Contains(err.Error(), "boot/vmlinuz-6.1.0-10-amd64 has no modules") || !strings.Contains(err.Error(), "lib/modules/6.1.0-10-amd64") {
		t.Fatalf("err = %v, want the kernel and the missing directory named", err)
	}
	if p, _ := s.Current("k"); p.Gen != res.Gen {
		t.Errorf("current changed to %s by a refused import", p.Gen)
	}
	res2, err := s.Import(context.Background(), ImportOptions{Name: "k", Source: src, NoKernelCheck: true})
	if err != nil || res2.Kernel != "boot/vmlinuz-6.1.0-10-amd64" || res2.Initrd != "" {
		t.Errorf("-no-kernel-check import: %+v, %v; want the newest kernel, no initrd", res2, err)
	}
}

func TestUseRemovePrune(t *testing.T) {
	s := newStore(t)
	src := t.TempDir()
	writeInit(t, src)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var gens []string
	for i := range 4 {
		os.WriteFile(filepath.Join(src, "version"), []byte(fmt.Sprint(i)), 0o644)
		res, err := s.Import(context.Background(), ImportOptions{Name: "os", Source: src, Now: func() time.Time { return now.Add(time.Duration(i) * time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		gens = append(gens, res.Gen)
	}
	if prev, err := s.Use("os", gens[0], now.Add(5*time.Hour)); err != nil || prev != gens[3] {
		t.Fatalf("use: %s, %v", prev, err)
	}
	pins := Pins{{Root: "os", Gen: gens[1]}: {"C0A80102"}}
	if _, err := s.Remove("os", gens[1], false, pins); !errors.Is(err, ErrPinned) || !strings.Contains(err.Error(), "C0A80102") {
		t.Errorf("remove a pinned generation: %v, want ErrPinned naming the node", err)
	}
	if _, err := s.Remove("os", gens[0], false, pins); err == nil {
		t.Error("removed the current generation without -force")
	}
	// Keep 1 newest (gens[3]) and current (gens[0]) and pinned (gens[1]):
	// gens[2] goes once its grace is over.
	// gens[2] stopped being current at 3h: in its grace until 6h.
	got, err := s.Prune(Policy{Keep: 1, Grace: 3 * time.Hour}, pins, now.Add(5*time.Hour+30*time.Minute))
	if err != nil || len(got["os"]) != 0 {
		t.Fatalf("prune in grace: %v, %v", got, err)
	}
	got, err = s.Prune(Policy{Keep: 1, Grace: 3 * time.Hour}, pins, now.Add(7*time.Hour))
	if err != nil || len(got["os"]) != 1 || got["os"][0] != gens[2] {
		t.Fatalf("prune: %v, %v; want %s", got, err, gens[2])
	}
	if _, err := os.Stat(filepath.Join(s.dir, "os", gens[2])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pruned generation still there: %v", err)
	}
	// Unpinned, gens[1] goes too.
	got, err = s.Prune(Policy{Keep: 1, Grace: time.Hour}, Pins{}, now.Add(7*time.Hour))
	if err != nil || len(got["os"]) != 1 || got["os"][0] != gens[1] {
		t.Fatalf("prune unpinned: %v, %v", got, err)
	}
	ls, err := s.List("os", pins)
	if err != nil || len(ls) != 2 || !ls[1].Current && !ls[0].Current {
		t.Errorf("list: %+v, %v", ls, err)
	}
}

// TestKilledImport: an import killed with SIGKILL mid-copy leaves nothing
// visible; the next import cleans its staging.
func TestKilledImport(t *testing.T) {
	if os.Getenv("ROOTS_TEST_CHILD") != "" {
		s := New(os.Getenv("ROOTS_DIR"), os.Getenv("ROOTS_STATE"), "")
		s.Import(context.Background(), ImportOptions{Name: "big", Source: os.Getenv("ROOTS_SRC")})
		return
	}
	s := newStore(t)
	src := t.TempDir()
	makeTree(t, src, 2000)
	for i := range 40 {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("big%d", i)), bytes.Repeat([]byte{byte(i + 1)}, 4<<20), 0o644)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledImport$")
	cmd.Env = append(os.Environ(), "ROOTS_TEST_CHILD=1", "ROOTS_DIR="+s.dir, "ROOTS_STATE="+s.stateDir, "ROOTS_SRC="+src)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the copy is under way, then kill it.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ents, _ := os.ReadDir(filepath.Join(s.dir, stagingDir)); len(ents) > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(s.dir, "big")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a killed import left roots_dir/big: %v", err)
	}
	if p, err := s.Current("big"); err == nil {
		t.Errorf("a killed import made a current generation %v", p)
	}
	if err := s.CleanStaging(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(filepath.Join(s.dir, stagingDir)); len(left) != 0 {
		t.Errorf("staging left after CleanStaging: %v", left)
	}
}
