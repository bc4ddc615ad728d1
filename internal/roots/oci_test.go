package roots

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// member is one entry of a test layer.
type member struct {
	h    tar.Header
	body string
}

func dir(n string) member { return member{h: tar.Header{Name: n, Typeflag: tar.TypeDir, Mode: 0o755}} }
func file(n, body string) member {
	return member{h: tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body: body}
}

// layerOf makes a layer of members, as a build tool writes one.
func layerOf(t *testing.T, ms ...member) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range ms {
		h := m.h
		h.ModTime = time.Unix(1700000000, 0)
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(m.body))
	}
	tw.Close()
	data := b.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage is a two-layer OS image: the second layer changes a file,
// deletes one (whiteout), makes a directory opaque and hard-links a file of
// the first layer.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	ping := file("usr/bin/ping", "\x7fELF ping")
	ping.h.Mode = 0o4755
	ping.h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string([]byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})}
	owned := file("etc/owned", "x")
	owned.h.Uid, owned.h.Gid = 1234, 5678
	l1 := layerOf(t,
		dir("etc"), dir("sbin"), dir("usr"), dir("usr/bin"), dir("dev"), dir("opaque"),
		file("sbin/init", "#!/bin/sh\n"), file("etc/pxebootfs-root", "gen-1\n"), file("etc/old", "gone\n"), owned, ping,
		member{h: tar.Header{Name: "etc/outside", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}},
		member{h: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
		file("opaque/a", "a"), file("opaque/b", "b"),
	)
	l2 := layerOf(t,
		file("etc/pxebootfs-root", "gen-2\n"),
		file("etc/.wh.old", ""),
		dir("opaque"), file("opaque/.wh..wh..opq", ""), file("opaque/c", "c"),
		member{h: tar.Header{Name: "usr/bin/ping6", Typeflag: tar.TypeLink, Linkname: "usr/bin/ping"}},
	)
	img, err := mutate.AppendLayers(empty.Image, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeLayout writes img as an OCI layout tagged tag.
func writeLayout(t *testing.T, img v1.Image, tag string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tarDir writes dir as a tar archive (an oci-archive of a layout).
func tarDir(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "archive.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, _ := d.Info()
		h, _ := tar.FileInfoHeader(fi, "")
		h.Name = rel
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			tw.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	f.Close()
	return out
}

// TestImportImages: an OCI layout, an OCI archive, a docker-archive and a
// registry on loopback give one generation (the same content hash, which
// covers paths, modes, owners, link targets, xattrs and file hashes), with
// the layers flattened as the image defines.
func TestImportImages(t *testing.T) {
	s := newStore(t)
	img := testImage(t)
	wantDigest, _ := img.Digest()

	lay := writeLayout(t, img, "v1")
	docker := filepath.Join(t.TempDir(), "image.tar")
	tag, _ := name.NewTag("pxebootfs.test/os:v1")
	if err := tarball.WriteToFile(docker, tag, img); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, _ := name.ParseReference(host + "/os:v1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}

	var gen string
	for i, src := range []string{"oci:" + lay + ":v1", "oci-archive:" + tarDir(t, lay), "docker-archive:" + docker, "docker://" + host + "/os:v1"} {
		res, err := s.Import(context.Background(), ImportOptions{Name: "img", Source: src})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if res.Origin == nil || res.Origin.Digest != wantDigest.String() || res.Origin.Platform != "linux/amd64" || res.Origin.Ref != src {
			t.Errorf("%s: origin %+v, want digest %s", src, res.Origin, wantDigest)
		}
		if i == 0 {
			gen = res.Gen
			if !res.Created {
				t.Fatal("first import created nothing")
			}
			checkImageTree(t, filepath.Join(s.dir, "img", gen))
			continue
		}
		if res.Gen != gen || res.Created {
			t.Errorf("%s: generation %s (created %v), want the layout's %s", src, res.Gen, res.Created, gen)
		}
	}
	ls, err := s.List("img", nil)
	if err != nil || len(ls) != 1 {
		t.Fatalf("list: %+v, %v", ls, err)
	}
	ix, _ := s.Load()
	if o := ix.Roots["img"].Generations[gen].Image; o == nil || o.Digest != wantDigest.String() {
		t.Errorf("index origin %+v", o)
	}
}

func checkImageTree(t *testing.T, gen string) {
	t.Helper()
	read := func(p string) string { b, _ := os.ReadFile(filepath.Join(gen, p)); return string(b) }
	if got := read("etc/pxebootfs-root"); got != "gen-2\n" {
		t.Errorf("etc/pxebootfs-root = %q, want the upper layer's", got)
	}
	for _, gone := range []string{"etc/old", "etc/.wh.old", "opaque/a", "opaque/b", "opaque/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(gen, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want it gone", gone, err)
		}
	}
	if read("opaque/c") != "c" {
		t.Error("opaque/c missing")
	}
	var a, b, st unix.Stat_t
	unix.Lstat(filepath.Join(gen, "usr/bin/ping"), &a)
	unix.Lstat(filepath.Join(gen, "usr/bin/ping6"), &b)
	if a.Ino == 0 || a.Ino != b.Ino || a.Mode&0o7777 != 0o4755 {
		t.Errorf("ping %d / ping6 %d (want one inode across layers), mode %o", a.Ino, b.Ino, a.Mode&0o7777)
	}
	if v, err := getXattr(filepath.Join(gen, "usr/bin/ping"), "security.capability"); err != nil || len(v) != 20 {
		t.Errorf("security.capability: %x, %v", v, err)
	}
	if l, _ := os.Readlink(filepath.Join(gen, "etc/outside")); l != "/etc/shadow" {
		t.Errorf("etc/outside -> %q", l)
	}
	if err := unix.Lstat(filepath.Join(gen, "dev/null"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null: mode %o rdev %d, %v", st.Mode, st.Rdev, err)
	}
	if err := unix.Lstat(filepath.Join(gen, "etc/owned"), &st); err != nil || st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("etc/owned: %d:%d, %v", st.Uid, st.Gid, err)
	}
	if fi, err := os.Stat(gen); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the generation's root: %v, %v; want 0755", fi.Mode(), err)
	}
}

// TestHostileImages: layers that try to leave the tree are refused, a layer
// whose digest does not match is refused, and nothing is created outside
// staging.
func TestHostileImages(t *testing.T) {
	s := newStore(t)
	outside := t.TempDir()
	base := []member{dir("sbin"), file("sbin/init", "#!/bin/sh\n")}
	tests := []struct {
		name string
		ms   []member
		want string
	}{
		{"dotdot", []member{file("../escape", "x")}, "unsafe tar path|leaves the image's root"},
		{"absolute", []member{file("/escape", "x")}, "absolute names|leaves the image's root"},
		{"through a symlink", []member{{h: tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside}}, file("link/escape", "x")}, "written through the symlink"},
		{"hard link out", []member{{h: tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../../etc/passwd"}}}, "leaves the image's root"},
		{"hard link absolute", []member{{h: tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}}}, "not a member name|leaves the image's root"},
		{"relative symlink out", []member{{h: tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../../x"}}}, "leaves the image's root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := mutate.AppendLayers(empty.Image, layerOf(t, append(base, tt.ms...)...))
			if err != nil {
				t.Fatal(err)
			}
			lay := writeLayout(t, img, "x")
			_, err = s.Import(context.Background(), ImportOptions{Name: "evil", Source: "oci:" + lay})
			// Whichever check comes first: go-containerregistry's, this
			// package's layer check, or the writer's.
			if err == nil || !regexp.MustCompile(tt.want).MatchString(err.Error()) {
				t.Errorf("err = %v, want it to match %q", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(s.dir, "evil")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("roots_dir/evil after a refused import: %v", err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("created outside: %v", ents)
			}
			if left, _ := os.ReadDir(filepath.Join(s.dir, stagingDir)); len(left) != 0 {
				t.Errorf("staging left: %v", left)
			}
		})
	}

	// A blob changed after the manifest was written.
	img, err := mutate.AppendLayers(empty.Image, layerOf(t, append(base, file("etc/a", strings.Repeat("a", 4096)))...))
	if err != nil {
		t.Fatal(err)
	}
	lay := writeLayout(t, img, "x")
	ls, _ := img.Layers()
	dg, _ := ls[0].Digest()
	blob := filepath.Join(lay, "blobs", dg.Algorithm, dg.Hex)
	other, _ := layerOf(t, append(base, file("etc/a", strings.Repeat("b", 4096)))...).Compressed()
	data, _ := io.ReadAll(other)
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(context.Background(), ImportOptions{Name: "evil", Source: "oci:" + lay}); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Errorf("a layer whose digest does not match: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "evil")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("roots_dir/evil after a refused import: %v", err)
	}
}

// TestBootabilityChecks: no init, or an fstab that mounts a root device,
// is refused with what to fix; -force imports it with a note.
func TestBootabilityChecks(t *testing.T) {
	s := newStore(t)
	tests := []struct {
		name string
		ms   []member
		want string
	}{
		{"no init", []member{dir("etc"), file("etc/hostname", "n\n")}, "no init"},
		{"fstab root device", []member{dir("sbin"), file("sbin/init", "x"), dir("etc"), file("etc/fstab", "# c\nUUID=1234 / ext4 defaults 0 1\n")}, "etc/fstab line 2 mounts / from UUID=1234"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, _ := mutate.AppendLayers(empty.Image, layerOf(t, tt.ms...))
			lay := writeLayout(t, img, "x")
			_, err := s.Import(context.Background(), ImportOptions{Name: "b", Source: "oci:" + lay})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			res, err := s.Import(context.Background(), ImportOptions{Name: "b", Source: "oci:" + lay, Force: true})
			if err != nil || !strings.Contains(strings.Join(res.Notes, "\n"), "imported with -force: ") {
				t.Errorf("-force: %+v, %v", res.Notes, err)
			}
		})
	}
	// An init named by the image config counts; a symlinked /sbin/init is
	// followed inside the tree (merged /usr).
	img, _ := mutate.AppendLayers(empty.Image, layerOf(t, dir("usr"), dir("usr/sbin"), file("usr/sbin/init", "x"),
		member{h: tar.Header{Name: "sbin", Typeflag: tar.TypeSymlink, Linkname: "usr/sbin"}}))
	if _, err := s.Import(context.Background(), ImportOptions{Name: "c", Source: "oci:" + writeLayout(t, img, "x")}); err != nil {
		t.Errorf("init through a symlinked /sbin: %v", err)
	}
}

// TestImportPlatform: from a multi-platform index, -platform picks the
// image of that platform (default: this machine's); one it lacks is an
// error naming those it has.
func TestImportPlatform(t *testing.T) {
	s := newStore(t)
	mk := func(arch, label string) v1.Image {
		img, err := mutate.AppendLayers(empty.Image, layerOf(t, dir("sbin"), file("sbin/init", "x"), dir("etc"), file("etc/arch", label)))
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		img, _ = mutate.ConfigFile(img, cf)
		return img
	}
	amd, arm := mk("amd64", "amd64"), mk("arm64", "arm64")
	ix := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(ix, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "multi"})); err != nil {
		t.Fatal(err)
	}
	armDigest, _ := arm.Digest()
	res, err := s.Import(context.Background(), ImportOptions{Name: "m", Source: "oci:" + dir + ":multi", Platform: "linux/arm64"})
	if err != nil || res.Origin.Digest != armDigest.String() || res.Origin.Platform != "linux/arm64" {
		t.Fatalf("-platform linux/arm64: %+v, %v", res.Origin, err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.dir, "m", res.Gen, "etc", "arch")); string(b) != "arm64" {
		t.Errorf("etc/arch = %q", b)
	}
	if _, err := s.Import(context.Background(), ImportOptions{Name: "m", Source: "oci:" + dir + ":multi", Platform: "linux/riscv64"}); err == nil || !strings.Contains(err.Error(), "linux/amd64, linux/arm64") {
		t.Errorf("a platform the index lacks: %v", err)
	}
}

// TestPlainHTTPOnlyToLoopback: go-containerregistry falls back to HTTP for
// private addresses; the import's transport refuses that unless
// -insecure-registry, and allows loopback.
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	refused := errors.New("base transport reached")
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, refused })
	for _, tt := range []struct {
		url      string
		insecure bool
		allowed  bool
	}{
		{"http://10.1.2.3/v2/", false, false},
		{"http://10.1.2.3/v2/", true, true},
		{"https://10.1.2.3/v2/", false, true},
		{"http://127.0.0.1:5000/v2/", false, true},
		{"http://localhost:5000/v2/", false, true},
		{"http://[::1]:5000/v2/", false, true},
	} {
		req, _ := http.NewRequest(http.MethodGet, tt.url, nil)
		_, err := (&tlsUnlessLoopback{base: base, insecure: tt.insecure}).RoundTrip(req)
		if got := errors.Is(err, refused); got != tt.allowed {
			t.Errorf("%s (insecure %v): %v; want allowed %v", tt.url, tt.insecure, err, tt.allowed)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
