package image

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/atomicfile"
)

// versionLen is how many hex digits of the content hash name a version.
const versionLen = 8

// Defaults of ImportOptions.
const (
	DefaultMaxSize = 8 << 30
	DefaultTimeout = 30 * time.Minute
	maxRedirects   = 5
	maxSumsSize    = 1 << 20
)

// Source is one FILE=SOURCE argument: SOURCE a local path or an http(s) URL.
type Source struct {
	File, From string
}

// ImportOptions is one import.
type ImportOptions struct {
	Name    string
	Sources []Source
	// SHA256 are expected checksums by FILE (hex).
	SHA256 map[string]string
	// SHA256Sums is a sha256sum(1) file (path or URL) whose lines name
	// FILEs or the base names of their sources.
	SHA256Sums string
	// MaxSize bounds each file (DefaultMaxSize); Timeout each HTTP
	// request, body included (DefaultTimeout).
	MaxSize int64
	Timeout time.Duration
	// Client is used for HTTP; nil means one with the timeouts above,
	// at most 5 redirects and TLS verified (Go's defaults).
	Client *http.Client
	// Progress, if set, gets a progress line per file (a terminal).
	Progress io.Writer
	Log      *slog.Logger
	Now      func() time.Time
}

// Result says what an import did.
type Result struct {
	Version string
	// Created: the version is new. Identical bytes imported again create
	// nothing.
	Created bool
	// Previous is the version that was current before ("" if none).
	Previous string
	// Fetched is how many bytes were read from sources (not counting
	// 304s and local files).
	Fetched int64
}

// Import fetches every source into staging, verifies it, and moves the set
// into images_dir/NAME/VERSION in one rename; then VERSION becomes NAME's
// current version. On any failure nothing is visible and the current
// version is unchanged.
func (s *Store) Import(ctx context.Context, o ImportOptions) (Result, error) {
	if err := o.check(); err != nil {
		return Result{}, fmt.Errorf("import %s: %w", o.Name, err)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Client == nil {
		o.Client = newClient(o.Timeout)
	}
	var res Result
	err := s.update(func(ix *Index) error {
		if err := s.cleanStagingLocked(); err != nil {
			return err
		}
		if err := s.adoptLocked(ix, o.Now(), o.Log); err != nil {
			return err
		}
		r, err := s.importLocked(ctx, ix, o)
		res = r
		return err
	})
	if err != nil {
		// Counted apart: the failed import's own update was not written.
		if uerr := s.update(func(ix *Index) error { ix.Stats.Failed++; return nil }); uerr != nil {
			o.Log.Warn("count failed import", "err", uerr)
		}
		return Result{}, fmt.Errorf("import %s: %w", o.Name, err)
	}
	return res, nil
}

func (o *ImportOptions) check() error {
	if err := CheckName("image name", o.Name); err != nil {
		return err
	}
	if len(o.Sources) == 0 {
		return errors.New("no FILE=SOURCE given")
	}
	seen := map[string]bool{}
	for _, src := range o.Sources {
		if err := CheckName("file name", src.File); err != nil {
			return err
		}
		if seen[src.File] {
			return fmt.Errorf("file %q given twice", src.File)
		}
		seen[src.File] = true
		if src.From == "" {
			return fmt.Errorf("file %q: empty source", src.File)
		}
	}
	for f, h := range o.SHA256 {
		if !seen[f] {
			return fmt.Errorf("-sha256 for %q, which is not imported", f)
		}
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("-sha256 %s=%q: not a sha256 in hex", f, h)
		}
	}
	return nil
}

func newClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	return &http.Client{
		Timeout:   timeout,
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			return nil
		},
	}
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

func (s *Store) importLocked(ctx context.Context, ix *Index, o ImportOptions) (Result, error) {
	want := map[string]string{}
	for f, h := range o.SHA256 {
		want[f] = strings.ToLower(h)
	}
	if o.SHA256Sums != "" {
		sums, err := readSums(ctx, o)
		if err != nil {
			return Result{}, err
		}
		for _, src := range o.Sources {
			base := path.Base(src.From)
			for _, key := range []string{src.File, base} {
				if h, ok := sums[key]; ok {
					if w, set := want[src.File]; set && w != h {
						return Result{}, fmt.Errorf("file %s: -sha256 %s but %s says %s", src.File, w, o.SHA256Sums, h)
					}
					want[src.File] = h
					break
				}
			}
			if _, ok := want[src.File]; !ok {
				return Result{}, fmt.Errorf("file %s: %s has no line for %q or %q", src.File, o.SHA256Sums, src.File, base)
			}
		}
	}

	stage, err := s.newStaging()
	if err != nil {
		return Result{}, err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(stage)
		}
	}()
	files := map[string]File{}
	var res Result
	for _, src := range o.Sources {
		f, fetched, err := s.fetch(ctx, ix, o, src, filepath.Join(stage, src.File))
		if err != nil {
			return Result{}, fmt.Errorf("file %s from %s: %w", src.File, src.From, err)
		}
		if w, ok := want[src.File]; ok && w != f.SHA256 {
			return Result{}, fmt.Errorf("file %s from %s: sha256 %s, want %s", src.File, src.From, f.SHA256, w)
		}
		files[src.File] = f
		res.Fetched += fetched
		o.Log.Info("image file fetched", "image", o.Name, "file", src.File, "source", src.From, "bytes", f.Size, "sha256", f.SHA256, "downloaded", fetched)
	}
	if err := atomicfile.SyncDir(stage); err != nil {
		return Result{}, err
	}
	res.Version = versionOf(files)
	im := ix.Images[o.Name]
	if im == nil {
		im = &Image{Versions: map[string]*Version{}}
		ix.Images[o.Name] = im
	}
	res.Previous = im.Current
	final := filepath.Join(s.imagesDir, o.Name, res.Version)
	switch _, err := os.Lstat(final); {
	case err == nil:
		// The same bytes are there already (the version is their hash);
		// a crash may have left it out of the index.
		if _, ok := im.Versions[res.Version]; !ok {
			im.Versions[res.Version] = &Version{Imported: o.Now().UTC(), Files: files}
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Chmod(stage, dirMode); err != nil {
			return Result{}, err
		}
		if err := mkdirMode(filepath.Dir(final), dirMode); err != nil {
			return Result{}, err
		}
		if err := os.Rename(stage, final); err != nil {
			return Result{}, fmt.Errorf("move version into place: %w", err)
		}
		done = true
		if err := atomicfile.SyncDir(filepath.Dir(final)); err != nil {
			return Result{}, err
		}
		res.Created = true
		im.Versions[res.Version] = &Version{Imported: o.Now().UTC(), Files: files}
	default:
		return Result{}, err
	}
	ix.Stats.Fetched += res.Fetched
	if res.Created {
		ix.Stats.Imported++
	} else {
		ix.Stats.Unchanged++
	}
	if im.Current != res.Version {
		if old := im.Versions[im.Current]; old != nil {
			old.Replaced = o.Now().UTC()
		}
		im.Current = res.Version
		im.Versions[res.Version].Replaced = time.Time{}
	}
	return res, nil
}

// versionOf hashes a set of files by name and content.
func versionOf(files map[string]File) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s %s\n", n, files[n].SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:versionLen]
}

// newStaging makes a private directory for one import's files.
func (s *Store) newStaging() (string, error) {
	// images_dir and staging get their modes explicitly: MkdirAll would
	// give images_dir staging's private mode, and a umask (systemd's
	// UMask=) could hide versions from the tftpd.
	if err := mkdirMode(s.imagesDir, dirMode); err != nil {
		return "", fmt.Errorf("images_dir: %w", err)
	}
	base := filepath.Join(s.imagesDir, stagingDir)
	if err := mkdirMode(base, stagingMode); err != nil {
		return "", fmt.Errorf("staging: %w", err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	dir := filepath.Join(base, "import-"+hex.EncodeToString(b))
	if err := os.Mkdir(dir, stagingMode); err != nil {
		return "", fmt.Errorf("staging: %w", err)
	}
	return dir, nil
}

// CleanStaging removes what a failed or killed import left in staging, and
// adopts or removes a version a killed import moved into place without
// indexing it (adoptLocked). It takes the lock, so it never touches a
// running import's files; while an import runs it returns ErrBusy at once
// (that import did the same when it started).
func (s *Store) CleanStaging(log *slog.Logger) error {
	if _, err := os.Stat(s.imagesDir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return s.tryUpdate(func(ix *Index) error {
		if err := s.cleanStagingLocked(); err != nil {
			return err
		}
		return s.adoptLocked(ix, time.Now(), log)
	})
}

func (s *Store) cleanStagingLocked() error {
	base := filepath.Join(s.imagesDir, stagingDir)
	des, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clean staging: %w", err)
	}
	for _, de := range des {
		if err := os.RemoveAll(filepath.Join(base, de.Name())); err != nil {
			return fmt.Errorf("clean staging: %w", err)
		}
	}
	return nil
}

// fetch copies one source to dst, hashing it; it returns the file and how
// many bytes came over the network.
func (s *Store) fetch(ctx context.Context, ix *Index, o ImportOptions, src Source, dst string) (File, int64, error) {
	if !isURL(src.From) {
		if !filepath.IsAbs(src.From) {
			abs, err := filepath.Abs(src.From)
			if err != nil {
				return File{}, 0, err
			}
			src.From = abs
		}
		in, err := os.Open(src.From)
		if err != nil {
			return File{}, 0, err
		}
		defer in.Close()
		fi, err := in.Stat()
		if err != nil {
			return File{}, 0, err
		}
		if !fi.Mode().IsRegular() {
			return File{}, 0, fmt.Errorf("not a regular file")
		}
		f, err := copyTo(dst, in, fi.Size(), o, src.File)
		f.Source = src.From
		return f, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.From, nil)
	if err != nil {
		return File{}, 0, err
	}
	cached, haveCache := ix.HTTP[src.From]
	var have string // a file of ours with the cached content
	if haveCache {
		have = s.findContent(ix, cached.SHA256)
		if have != "" {
			if cached.ETag != "" {
				req.Header.Set("If-None-Match", cached.ETag)
			}
			if cached.LastModified != "" {
				req.Header.Set("If-Modified-Since", cached.LastModified)
			}
		}
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return File{}, 0, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && have != "":
		// Unchanged: the same bytes, linked (versions are immutable).
		if err := os.Link(have, dst); err != nil {
			return File{}, 0, fmt.Errorf("reuse unchanged %s: %w", have, err)
		}
		o.Log.Info("image source unchanged (304); not downloaded", "source", src.From)
		return File{Size: cached.Size, SHA256: cached.SHA256, Source: src.From}, 0, nil
	case resp.StatusCode != http.StatusOK:
		return File{}, 0, fmt.Errorf("GET %s: %s", src.From, resp.Status)
	}
	if resp.ContentLength > o.MaxSize {
		return File{}, 0, fmt.Errorf("%d bytes is larger than the limit of %d", resp.ContentLength, o.MaxSize)
	}
	f, err := copyTo(dst, resp.Body, resp.ContentLength, o, src.File)
	if err != nil {
		return File{}, 0, err
	}
	f.Source = src.From
	if ix.HTTP == nil {
		ix.HTTP = map[string]HTTPCache{}
	}
	ix.HTTP[src.From] = HTTPCache{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), SHA256: f.SHA256, Size: f.Size}
	return f, f.Size, nil
}

// findContent returns the path of a file of some version with this sha256.
func (s *Store) findContent(ix *Index, sum string) string {
	for name, im := range ix.Images {
		for v, ver := range im.Versions {
			for fname, f := range ver.Files {
				if f.SHA256 == sum {
					p := filepath.Join(s.imagesDir, name, v, fname)
					if _, err := os.Stat(p); err == nil {
						return p
					}
				}
			}
		}
	}
	return ""
}

// copyTo writes r to a new file dst (never an existing one), at most
// o.MaxSize bytes, exactly size bytes when size >= 0, and fsyncs it.
func copyTo(dst string, r io.Reader, size int64, o ImportOptions, label string) (File, error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return File{}, err
	}
	defer out.Close()
	if err := out.Chmod(fileMode); err != nil { // whatever the umask
		return File{}, err
	}
	h := sha256.New()
	var w io.Writer = io.MultiWriter(out, h)
	if o.Progress != nil {
		p := &progress{w: o.Progress, label: label, total: size}
		defer p.done()
		w = io.MultiWriter(w, p)
	}
	n, err := io.Copy(w, io.LimitReader(r, o.MaxSize+1))
	if err != nil {
		return File{}, err
	}
	switch {
	case n > o.MaxSize:
		return File{}, fmt.Errorf("larger than the limit of %d bytes", o.MaxSize)
	case size >= 0 && n != size:
		return File{}, fmt.Errorf("got %d bytes, want %d", n, size)
	}
	if err := out.Sync(); err != nil {
		return File{}, err
	}
	if err := out.Close(); err != nil {
		return File{}, err
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// readSums reads a sha256sum(1) file into name -> hex.
func readSums(ctx context.Context, o ImportOptions) (map[string]string, error) {
	var r io.Reader
	if isURL(o.SHA256Sums) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.SHA256Sums, nil)
		if err != nil {
			return nil, err
		}
		resp, err := o.Client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("checksums: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("checksums: GET %s: %s", o.SHA256Sums, resp.Status)
		}
		r = resp.Body
	} else {
		f, err := os.Open(o.SHA256Sums)
		if err != nil {
			return nil, fmt.Errorf("checksums: %w", err)
		}
		defer f.Close()
		r = f
	}
	sums := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, maxSumsSize))
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("checksums %s:%d: want \"SHA256  NAME\"", o.SHA256Sums, line)
		}
		h := strings.ToLower(fields[0])
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("checksums %s:%d: %q is not a sha256", o.SHA256Sums, line, fields[0])
		}
		sums[path.Base(strings.TrimPrefix(fields[1], "*"))] = h
	}
	return sums, sc.Err()
}

// progress draws "FILE  12.0 / 40.0 MiB" on one terminal line.
type progress struct {
	w     io.Writer
	label string
	total int64
	n     int64
	last  time.Time
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		p.draw()
	}
	return len(b), nil
}

func (p *progress) draw() {
	const mib = 1 << 20
	if p.total > 0 {
		fmt.Fprintf(p.w, "\r%-16s %8.1f / %.1f MiB %3d%%", p.label, float64(p.n)/mib, float64(p.total)/mib, p.n*100/p.total)
	} else {
		fmt.Fprintf(p.w, "\r%-16s %8.1f MiB", p.label, float64(p.n)/mib)
	}
}

func (p *progress) done() { p.draw(); fmt.Fprintln(p.w) }

// mkdirMode makes dir (and missing parents) if needed and gives dir mode,
// whatever the umask.
func mkdirMode(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}
