package roots

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/atomicfile"
	"github.com/pxebootfs/pxebootfs/internal/beneath"
)

// ImportOptions is one import.
type ImportOptions struct {
	Name string
	// Source is a directory, a tar archive (plain, gzip, zstd), or a
	// container image: oci:PATH[:TAG], oci-archive:FILE,
	// docker-archive:FILE[:TAG], docker://REF.
	Source string
	// NoKernelCheck imports a tree whose boot/vmlinuz-VERSION has no
	// lib/modules/VERSION.
	NoKernelCheck bool
	// Force imports a tree the bootability checks refuse (see boot.go).
	Force bool
	// Platform picks from a multi-platform image (OS/ARCH[/VARIANT]); ""
	// is the host's.
	Platform string
	// InsecureRegistry allows plain HTTP to a registry that is not on a
	// loopback address.
	InsecureRegistry bool
	// MakeBoot, if set, makes the boot image of a generation with a
	// kernel (dir is the generation, kernel and initrd relative to it),
	// after the generation is in place and before it is current: a failure
	// fails the import, and a generation made by it is removed again.
	MakeBoot func(dir, kernel, initrd string) (BootImage, error)
	// Progress, if set, gets a progress line now and then (a terminal).
	Progress io.Writer
	Log      *slog.Logger
	Now      func() time.Time
}

// Result says what an import did.
type Result struct {
	Gen string
	// Created: the generation is new. The same tree imported again
	// creates nothing.
	Created bool
	// Previous is the generation that was current before ("" if none).
	Previous string
	Files    int
	Size     int64
	Kernel   string // boot/vmlinuz-VERSION, "" if none
	Initrd   string
	Boot     BootImage // made by MakeBoot
	Origin   *Origin   // a container image's reference and digests
	// Notes are what the bootability checks report without refusing
	// (e.g. how the node will mount its root).
	Notes []string
}

// Import copies o.Source into staging, names the copy by its content, and
// moves it into roots_dir/NAME/GEN in one rename; then GEN becomes NAME's
// current generation. On any failure (or a kill) nothing is visible and the
// current generation is unchanged; staging leftovers are removed by the
// next import and at daemon start. Imports hold the index lock throughout,
// so two never race; the daemon only reads the index.
func (s *Store) Import(ctx context.Context, o ImportOptions) (res Result, err error) {
	if s.dir == "" {
		return res, errors.New("root import: roots_dir is not set in the config")
	}
	if err := CheckName(o.Name); err != nil {
		return res, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	err = s.locked(unix.LOCK_EX, func() error {
		if err := s.cleanStagingLocked(); err != nil {
			return err
		}
		res, err = s.importLocked(ctx, o)
		return err
	})
	return res, err
}

func (s *Store) importLocked(ctx context.Context, o ImportOptions) (res Result, err error) {
	staging, err := s.newStaging(o.Name)
	if err != nil {
		return res, err
	}
	defer func() {
		if staging != "" {
			if rerr := removeTree(staging); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	w := newWriter(staging)
	var imgConfig *v1.ConfigFile
	stop := progress(o.Progress, o.Name, w)
	if isImageSource(o.Source) {
		res.Origin, imgConfig, err = s.readImageSource(ctx, o, staging, w)
	} else {
		err = readSource(ctx, o.Source, w.write)
	}
	stop()
	if err != nil {
		return res, fmt.Errorf("root import %s: %w", o.Name, err)
	}
	if err := w.finish(); err != nil {
		return res, fmt.Errorf("root import %s: %w", o.Name, err)
	}
	if res.Notes, err = checkBootable(staging, imgConfig, o.Force); err != nil {
		return res, fmt.Errorf("root import %s: %w", o.Name, err)
	}
	sum, err := manifest(staging)
	if err != nil {
		return res, fmt.Errorf("root import %s: %w", o.Name, err)
	}
	res.Gen, res.Files, res.Size = sum.gen, sum.files, sum.size
	res.Kernel, res.Initrd, err = findKernel(staging, o.NoKernelCheck || o.Force)
	if err != nil {
		return res, fmt.Errorf("root import %s: %w", o.Name, err)
	}
	ix, err := s.Load()
	if err != nil {
		return res, err
	}
	r := ix.Roots[o.Name]
	if r == nil {
		r = &Root{Generations: map[string]*Generation{}}
		ix.Roots[o.Name] = r
	}
	res.Previous = r.Current
	final := s.genDir(Pin{Root: o.Name, Gen: res.Gen})
	if _, err := os.Lstat(final); err == nil {
		// The same tree again: nothing new is made.
		o.Log.Info("root import: identical to an existing generation", "root", o.Name, "generation", res.Gen)
	} else {
		if err := os.MkdirAll(filepath.Dir(final), dirMode); err != nil {
			return res, err
		}
		if err := os.Rename(staging, final); err != nil {
			return res, fmt.Errorf("root import %s: move into place: %w", o.Name, err)
		}
		staging = ""
		if err := atomicfile.SyncDir(filepath.Dir(final)); err != nil {
			return res, err
		}
		res.Created = true
	}
	if err := seal(final); err != nil {
		return res, err
	}
	g := r.Generations[res.Gen]
	if res.Kernel != "" && o.MakeBoot != nil && (g == nil || g.Boot.Version == "") {
		if res.Boot, err = o.MakeBoot(final, res.Kernel, res.Initrd); err != nil {
			err = fmt.Errorf("root import %s: boot image of %s: %w", o.Name, res.Kernel, err)
			if res.Created && g == nil {
				err = errors.Join(err, s.removeGen(Pin{o.Name, res.Gen}))
				_ = os.Remove(filepath.Dir(final)) // if it was the root's first
			}
			return res, err
		}
	}
	now := o.Now()
	if g == nil {
		g = &Generation{Imported: now, Source: o.Source, Size: res.Size, Files: res.Files, Kernel: res.Kernel, Initrd: res.Initrd, Image: res.Origin}
		r.Generations[res.Gen] = g
	}
	if res.Boot.Version != "" {
		g.Boot = res.Boot
	}
	res.Boot = g.Boot
	if r.Current != res.Gen {
		if prev := r.Generations[r.Current]; prev != nil {
			prev.Replaced = now
		}
		g.Replaced = time.Time{}
		r.Current = res.Gen
	}
	return res, s.write(ix)
}

// readImageSource reads a container image into w, with a scratch
// directory beside staging for archives that must be unpacked or copied
// first (removed with staging's leftovers if the import is killed).
func (s *Store) readImageSource(ctx context.Context, o ImportOptions, staging string, w *writer) (*Origin, *v1.ConfigFile, error) {
	p, err := parsePlatform(o.Platform)
	if err != nil {
		return nil, nil, err
	}
	scratch := staging + ".src"
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return nil, nil, err
	}
	defer removeTree(scratch)
	opts := imageOptions{platform: p, insecure: o.InsecureRegistry, scratch: scratch, log: o.Log, progress: o.Progress}
	img, err := openImage(ctx, o.Source, opts)
	if err != nil {
		return nil, nil, err
	}
	origin, err := describe(img, o.Source)
	if err != nil {
		return nil, nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("image config: %w", err)
	}
	if err := readImage(ctx, img, opts, w.write); err != nil {
		return nil, nil, err
	}
	return origin, cf, nil
}

// dirMode is a root's directory in roots_dir; a generation's own root has
// the mode of the tree's root.
const dirMode = 0o755

// newStaging makes a private directory for one import.
func (s *Store) newStaging(name string) (string, error) {
	base := filepath.Join(s.dir, stagingDir)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", fmt.Errorf("root staging: %w", err)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	dir := filepath.Join(base, name+"-"+hex.EncodeToString(b[:]))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("root staging: %w", err)
	}
	return dir, nil
}

// CleanStaging removes what killed imports left in staging, unless an
// import is running (it holds the lock; its staging is its own).
func (s *Store) CleanStaging() error {
	if s.dir == "" {
		return nil
	}
	err := s.locked(unix.LOCK_EX|unix.LOCK_NB, s.cleanStagingLocked)
	if errors.Is(err, ErrBusy) {
		return nil
	}
	return err
}

func (s *Store) cleanStagingLocked() error {
	base := filepath.Join(s.dir, stagingDir)
	ents, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("root staging: %w", err)
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, removeTree(filepath.Join(base, e.Name())))
	}
	return errors.Join(errs...)
}

// removeTree removes a tree whose directories may be read-only (their
// modes are the imported tree's).
func removeTree(dir string) error {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// summary is what manifest finds in a tree.
type summary struct {
	gen   string
	files int
	size  int64
}

// manifest names a tree by its content: every entry's name, type, mode,
// owner, link target, device number, extended attributes and (for regular
// files) content hash, in name order; hard links as links to the first name
// of their inode. Times are left out, so the same tree from a directory or
// from a tar of it (which may keep only seconds) is one generation.
func manifest(root string) (summary, error) {
	var sum summary
	h := sha256.New()
	first := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		sum.files++
		fmt.Fprintf(h, "%q %o %d %d", rel, st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, " -> %q\n", t)
			return nil
		case unix.S_IFCHR, unix.S_IFBLK:
			fmt.Fprintf(h, " dev %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case unix.S_IFREG:
			if name, ok := first[st.Ino]; ok {
				fmt.Fprintf(h, " link %q\n", name)
				return nil
			}
			first[st.Ino] = rel
			sum.size += st.Size
			if err := hashFile(h, p); err != nil {
				return err
			}
		}
		xs, err := readXattrs(p)
		if err != nil {
			return err
		}
		keys := make([]string, 0, len(xs))
		for k := range xs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(h, " x %q=%q", k, xs[k])
		}
		fmt.Fprintln(h)
		return nil
	})
	if err != nil {
		return sum, fmt.Errorf("hash the tree: %w", err)
	}
	sum.gen = hex.EncodeToString(h.Sum(nil))[:genLen]
	return sum, nil
}

func hashFile(h hash.Hash, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fh := sha256.New()
	if _, err := io.Copy(fh, f); err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	fmt.Fprintf(h, " sha256 %x", fh.Sum(nil))
	return nil
}

// findKernel finds the tree's kernel, boot/vmlinuz-VERSION (the one
// boot/vmlinuz points to if there are several, else the highest version),
// and its boot/initrd.img-VERSION. Every kernel must have its modules,
// (usr/)lib/modules/VERSION, unless noCheck: a node would boot a kernel
// that cannot load a driver.
func findKernel(root string, noCheck bool) (kernel, initrd string, err error) {
	ents, err := os.ReadDir(filepath.Join(root, "boot"))
	if err != nil {
		return "", "", nil
	}
	var versions []string
	for _, e := range ents {
		if v, ok := strings.CutPrefix(e.Name(), "vmlinuz-"); ok && e.Type().IsRegular() {
			versions = append(versions, v)
		}
	}
	if len(versions) == 0 {
		return "", "", nil
	}
	if !noCheck {
		for _, v := range versions {
			if !hasModules(root, v) {
				return "", "", fmt.Errorf("kernel boot/vmlinuz-%s has no modules: neither lib/modules/%s nor usr/lib/modules/%s is a directory in the tree (import with -no-kernel-check to accept it)", v, v, v)
			}
		}
	}
	slices.SortFunc(versions, compareVersions)
	v := versions[len(versions)-1]
	if t, err := os.Readlink(filepath.Join(root, "boot", "vmlinuz")); err == nil {
		if tv, ok := strings.CutPrefix(path.Base(t), "vmlinuz-"); ok && slices.Contains(versions, tv) {
			v = tv
		}
	}
	kernel = "boot/vmlinuz-" + v
	if fi, err := beneath.Stat(root, "boot/initrd.img-"+v); err == nil && fi.Mode().IsRegular() {
		initrd = "boot/initrd.img-" + v
	}
	return kernel, initrd, nil
}

func hasModules(root, v string) bool {
	for _, d := range []string{"usr/lib/modules/", "lib/modules/"} {
		if fi, err := beneath.Stat(root, d+v); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// compareVersions orders kernel versions by their numeric fields
// (6.1.0-9 < 6.1.0-10).
func compareVersions(a, b string) int {
	fa, fb := versionFields(a), versionFields(b)
	for i := 0; i < len(fa) && i < len(fb); i++ {
		na, ea := strconv.Atoi(fa[i])
		nb, eb := strconv.Atoi(fb[i])
		switch {
		case ea == nil && eb == nil && na != nb:
			return na - nb
		case (ea != nil || eb != nil) && fa[i] != fb[i]:
			return strings.Compare(fa[i], fb[i])
		}
	}
	return len(fa) - len(fb)
}

func versionFields(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '~' })
}

// progress draws "NAME: N files, M MiB" on w every half second until
// stopped; nothing without w.
func progress(w io.Writer, name string, wr *writer) (stop func()) {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	draw := func() {
		fmt.Fprintf(w, "\rroot import %s: %d files, %d MiB", name, wr.files.Load(), wr.bytes.Load()>>20)
	}
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				draw()
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		draw()
		fmt.Fprintln(w)
	}
}
