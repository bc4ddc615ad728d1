package roots

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// What mutate.Extract does not do for an import, done on the streams it
// reads: every layer's members are checked (names and hard links that leave
// the tree, and writes through a symlink, are refused; Extract would drop
// some of them silently, so the tree would differ from the image without a
// word), and every layer's content is checked against its digest in the
// image config (diff ID): a layout's or an archive's blobs are not
// verified when read. The config is checked against the manifest, which
// names it by digest.

// verifyImage checks the config against the manifest's digest of it.
func verifyImage(img v1.Image) error {
	raw, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	want, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	if got := sha256Of(raw); got != want.String() {
		return fmt.Errorf("image config: content %s does not match its digest %s", got, want)
	}
	return nil
}

func sha256Of(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// checkedImage is img with checked layers.
type checkedImage struct{ v1.Image }

// Layers are the image's layers, each checked against the diff ID the
// config lists for it (go-containerregistry's own DiffID of a layout's
// layer is computed from the blob, so it cannot tell a changed one).
func (i checkedImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	cf, err := i.Image.ConfigFile()
	if err != nil {
		return nil, err
	}
	if len(cf.RootFS.DiffIDs) != len(ls) {
		return nil, fmt.Errorf("image: %d layers but the config lists %d diff ids", len(ls), len(cf.RootFS.DiffIDs))
	}
	out := make([]v1.Layer, len(ls))
	for n, l := range ls {
		out[n] = checkedLayer{Layer: l, diff: cf.RootFS.DiffIDs[n]}
	}
	return out, nil
}

type checkedLayer struct {
	v1.Layer
	diff v1.Hash // from the config
}

// Uncompressed is the layer's tar stream, checked while it is read: the
// members by a parser reading a copy of it, the bytes by their hash. A
// problem is the stream's error at its end (Extract reads every layer to
// its end), before Extract has finished with the layer.
func (l checkedLayer) Uncompressed() (io.ReadCloser, error) {
	diff := l.diff
	rc, err := l.Layer.Uncompressed()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := checkMembers(pr)
		io.Copy(io.Discard, pr) // keep the tee going after a verdict
		done <- err
	}()
	h := sha256.New()
	return &checkedReader{rc: rc, r: io.TeeReader(rc, io.MultiWriter(h, pw)), pw: pw, done: done, h: h, want: diff}, nil
}

type checkedReader struct {
	rc   io.ReadCloser
	r    io.Reader
	pw   *io.PipeWriter
	done chan error
	h    hash.Hash
	want v1.Hash
	err  error
	fin  bool
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.fin {
		return 0, io.EOF
	}
	n, err := c.r.Read(p)
	if err == io.EOF {
		c.pw.Close()
		c.fin = true
		if cerr := <-c.done; cerr != nil {
			c.err = fmt.Errorf("layer %s: %w", c.want, cerr)
			return n, c.err
		}
		if got := "sha256:" + hex.EncodeToString(c.h.Sum(nil)); got != c.want.String() {
			c.err = fmt.Errorf("layer %s: content does not match its digest (it is %s)", c.want, got)
			return n, c.err
		}
	}
	return n, err
}

func (c *checkedReader) Close() error {
	if !c.fin {
		c.pw.CloseWithError(errors.New("layer closed early"))
		<-c.done
	}
	return c.rc.Close()
}

// checkMembers refuses a layer member that would leave the tree or be
// written through a symlink of the same layer.
func checkMembers(r io.Reader) error {
	tr := tar.NewReader(r)
	links := map[string]bool{} // symlinks of this layer
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if leaves(name) {
			return fmt.Errorf("member %q leaves the image's root", h.Name)
		}
		for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
			if links[d] {
				return fmt.Errorf("member %q is written through the symlink %q", h.Name, d)
			}
		}
		switch h.Typeflag {
		case tar.TypeLink:
			if leaves(path.Clean(h.Linkname)) {
				return fmt.Errorf("member %q: hard link to %q leaves the image's root", h.Name, h.Linkname)
			}
		case tar.TypeSymlink:
			links[name] = true
			if !path.IsAbs(h.Linkname) && leaves(path.Join(path.Dir(name), h.Linkname)) {
				return fmt.Errorf("member %q: symlink to %q leaves the image's root (relative)", h.Name, h.Linkname)
			}
		}
	}
}

// leaves reports whether a cleaned name is absolute or climbs out.
func leaves(name string) bool {
	return path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../")
}
