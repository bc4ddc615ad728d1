package roots

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Container images are read with go-containerregistry: OCI layouts, docker
// archives and registries, and mutate.Extract, which flattens the layers in
// order with whiteouts and opaque directories applied (and refuses names
// that leave the tree). Its output is a tar stream that goes through the
// same checks and writer as a tar import.

// Origin is where a generation imported from a container image came from.
type Origin struct {
	Ref          string `json:"ref"`           // as given, e.g. docker://registry.example/os:12
	Digest       string `json:"digest"`        // of the manifest
	ConfigDigest string `json:"config_digest"` // of the image config
	Platform     string `json:"platform"`      // e.g. linux/amd64
}

// Prefixes of the image sources.
const (
	srcOCI           = "oci:"
	srcOCIArchive    = "oci-archive:"
	srcDockerArchive = "docker-archive:"
	srcRegistry      = "docker://"
)

// isImageSource reports whether source names a container image.
func isImageSource(source string) bool {
	for _, p := range []string{srcOCI, srcOCIArchive, srcDockerArchive, srcRegistry} {
		if strings.HasPrefix(source, p) {
			return true
		}
	}
	return false
}

// imageOptions is what reading an image needs besides its source.
type imageOptions struct {
	platform v1.Platform
	insecure bool   // plain HTTP to any registry (-insecure-registry)
	scratch  string // a private directory for unpacked archives and stdin
	log      *slog.Logger
	progress io.Writer
}

// parsePlatform reads OS/ARCH[/VARIANT]; "" is the host's.
func parsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, nil
	}
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want OS/ARCH[/VARIANT], e.g. linux/arm64", s)
	}
	return *p, nil
}

// splitTag splits PATH[:TAG]: the tag is what follows the last ':' when it
// has no '/' (a path may hold colons too).
func splitTag(s string) (path, tag string) {
	if i := strings.LastIndexByte(s, ':'); i > 0 && !strings.Contains(s[i+1:], "/") {
		if _, err := os.Stat(s); err != nil { // a file named with a colon wins
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// openImage opens the image source names.
func openImage(ctx context.Context, source string, o imageOptions) (v1.Image, error) {
	switch {
	case strings.HasPrefix(source, srcRegistry):
		return openRegistry(ctx, strings.TrimPrefix(source, srcRegistry), o)
	case strings.HasPrefix(source, srcDockerArchive):
		path, tag := splitTag(strings.TrimPrefix(source, srcDockerArchive))
		path, err := regularCopy(path, o.scratch)
		if err != nil {
			return nil, err
		}
		var t *name.Tag
		if tag != "" {
			nt, err := name.NewTag(tag)
			if err != nil {
				return nil, fmt.Errorf("docker-archive tag %q: %w", tag, err)
			}
			t = &nt
		}
		img, err := tarball.ImageFromPath(path, t)
		if err != nil {
			return nil, fmt.Errorf("docker-archive %s: %w", path, err)
		}
		return img, nil
	case strings.HasPrefix(source, srcOCIArchive):
		path, err := regularCopy(strings.TrimPrefix(source, srcOCIArchive), o.scratch)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(o.scratch, "oci-layout")
		if err := unpackArchive(path, dir); err != nil {
			return nil, fmt.Errorf("oci-archive %s: %w", path, err)
		}
		return fromLayout(dir, "", o.platform)
	default:
		path, tag := splitTag(strings.TrimPrefix(source, srcOCI))
		return fromLayout(path, tag, o.platform)
	}
}

// unpackArchive extracts a tar (an OCI layout: plain files) into dir with
// the import's own checks: nothing lands outside dir.
func unpackArchive(path, dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	w := newWriter(dir)
	if err := readSource(context.Background(), path, w.write); err != nil {
		return err
	}
	return w.finish()
}

// regularCopy returns path if it is a regular file, else copies it (a pipe
// such as /dev/stdin: `podman save … | pxebootfs root import NAME
// docker-archive:/dev/stdin`) into scratch: the archive readers open it
// more than once.
func regularCopy(path, scratch string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("source: %w", err)
	}
	if fi.Mode().IsRegular() {
		return path, nil
	}
	in, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("source: %w", err)
	}
	defer in.Close()
	out, err := os.CreateTemp(scratch, "stdin-*")
	if err != nil {
		return "", err
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return out.Name(), nil
}

// fromLayout picks an image from an OCI layout: the one whose ref name
// annotation is tag, or the only one; an index in it is resolved for the
// platform.
func fromLayout(path, tag string, p v1.Platform) (v1.Image, error) {
	ix, err := layout.ImageIndexFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", path, err)
	}
	im, err := ix.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", path, err)
	}
	var found []v1.Descriptor
	var names []string
	for _, d := range im.Manifests {
		ref := d.Annotations["org.opencontainers.image.ref.name"]
		names = append(names, ref)
		if tag == "" || ref == tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0:
		return nil, fmt.Errorf("oci layout %s: no image tagged %q (it has %q)", path, tag, names)
	case len(found) > 1:
		return nil, fmt.Errorf("oci layout %s: %d images (%q); name one as oci:PATH:TAG", path, len(found), names)
	}
	d := found[0]
	if d.MediaType.IsIndex() {
		sub, err := ix.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return forPlatform(sub, p)
	}
	return ix.Image(d.Digest)
}

// forPlatform picks p's image from a multi-platform index.
func forPlatform(ix v1.ImageIndex, p v1.Platform) (v1.Image, error) {
	im, err := ix.IndexManifest()
	if err != nil {
		return nil, err
	}
	var have []string
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Satisfies(p) {
			return ix.Image(d.Digest)
		}
		if d.Platform != nil {
			have = append(have, d.Platform.String())
		}
	}
	return nil, fmt.Errorf("no image for platform %s (the index has %s); choose one with -platform", p.String(), strings.Join(have, ", "))
}

// openRegistry fetches ref with the credentials of ~/.docker/config.json,
// TLS verified; plain HTTP only to a loopback registry, or with insecure.
func openRegistry(ctx context.Context, ref string, o imageOptions) (v1.Image, error) {
	var opts []name.Option
	if o.insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("registry reference %q: %w", ref, err)
	}
	tr := &tlsUnlessLoopback{base: remote.DefaultTransport, insecure: o.insecure}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(o.platform), remote.WithTransport(tr))
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", ref, err)
	}
	return img, nil
}

// tlsUnlessLoopback refuses plain HTTP to anything but a loopback address
// unless insecure: go-containerregistry falls back to HTTP for private
// (RFC 1918) addresses too, and an image is a whole OS.
type tlsUnlessLoopback struct {
	base     http.RoundTripper
	insecure bool
}

func (t *tlsUnlessLoopback) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.insecure && !isLoopback(req.URL.Hostname()) {
		return nil, fmt.Errorf("plain HTTP to %s refused: only loopback registries are used without TLS (-insecure-registry to allow it)", req.URL.Host)
	}
	return t.base.RoundTrip(req)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// describe records where img came from.
func describe(img v1.Image, ref string) (*Origin, error) {
	dg, err := img.Digest()
	if err != nil {
		return nil, err
	}
	cd, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	p := cf.Platform()
	plat := ""
	if p != nil {
		plat = p.String()
	}
	return &Origin{Ref: ref, Digest: dg.String(), ConfigDigest: cd.String(), Platform: plat}, nil
}

// readImage feeds the flattened tree of img to put, reporting each layer
// as it is read.
func readImage(ctx context.Context, img v1.Image, o imageOptions, put func(*entry) error) error {
	if err := verifyImage(img); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("image layers: %w", err)
	}
	for i, l := range layers {
		dg, _ := l.Digest()
		size, _ := l.Size()
		if o.progress != nil {
			fmt.Fprintf(o.progress, "layer %d/%d %s %d MiB\n", i+1, len(layers), dg, size>>20)
		} else {
			o.log.Info("root import: layer", "n", i+1, "of", len(layers), "digest", dg.String(), "bytes", size)
		}
	}
	// A layer that fails (a digest that does not match, a name that
	// leaves the tree) ends the stream with its error.
	r := mutate.Extract(checkedImage{img})
	defer r.Close()
	if err := readTar(ctx, r, put); err != nil {
		return err
	}
	// Extract's tar writer ends the stream with a valid end marker before
	// the pipe carries a failed layer's error: read on to the end.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	return nil
}
