// Package image keeps versioned boot images: named sets of files (a kernel,
// an initrd, a squashfs…) that a tftpd serves from the TFTP root, beside the
// FUSE mount. Each import of an image is a new, immutable version in
// images_dir/NAME/VERSION/, made complete in a staging directory and moved
// into place in one rename; the image's current version is switched by an
// atomic rewrite of an index in state_dir. Files a tftpd may be reading are
// never written, truncated or renamed, so a node that got a config naming
// one version always finds that version's kernel and initrd, complete and
// matching, whatever is imported meanwhile.
//
// The index (state_dir/images.json) is changed only under an exclusive
// flock of state_dir/images.lock, by the image commands and by the daemon
// (which records when a config naming a version was last served); readers
// (renders) use it without the lock, as the file is always replaced whole.
package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/atomicfile"
	"github.com/pxebootfs/pxebootfs/internal/safename"
)

// File names in state_dir and images_dir.
const (
	IndexName  = "images.json"
	lockName   = "images.lock"
	stagingDir = ".staging" // in images_dir, so renames stay on one filesystem
)

// Modes: a tftpd running as tftp or nobody must read every version; staging
// is private so that nothing half-made can be served.
const (
	dirMode     = 0o755
	fileMode    = 0o644
	stagingMode = 0o700
)

// ErrNotFound is wrapped by errors for an unknown image, version or file.
var ErrNotFound = errors.New("not found")

// ErrInGrace is wrapped when removing a version that may still be booting.
var ErrInGrace = errors.New("served within the grace period")

// CheckName checks an image or file name (package safename's rule).
func CheckName(kind, s string) error { return safename.Check(kind, s) }

// checkVersion checks a version as given on the command line: 8 lower-case
// hex digits, as Import makes them.
func checkVersion(v string) error {
	if len(v) != versionLen {
		return fmt.Errorf("version %q: want %d hex digits", v, versionLen)
	}
	for i := 0; i < len(v); i++ {
		if !(v[i] >= '0' && v[i] <= '9' || v[i] >= 'a' && v[i] <= 'f') {
			return fmt.Errorf("version %q: want %d lower-case hex digits", v, versionLen)
		}
	}
	return nil
}

// Index is everything known about images, as kept in state_dir.
type Index struct {
	Images map[string]*Image `json:"images"`
	// HTTP remembers, per source URL, its validators and the content
	// they named, for conditional requests.
	HTTP map[string]HTTPCache `json:"http,omitempty"`
	// Stats count imports, for the daemon's metrics (imports run in
	// their own processes).
	Stats Stats `json:"stats"`
}

// Stats are import counters.
type Stats struct {
	Imported  int64 `json:"imported"`  // new versions
	Unchanged int64 `json:"unchanged"` // identical bytes imported again
	Failed    int64 `json:"failed"`
	Fetched   int64 `json:"fetched_bytes"` // bytes downloaded over HTTP
}

// Image is one named image.
type Image struct {
	Current  string              `json:"current"`
	Versions map[string]*Version `json:"versions"`
}

// Version is one imported version of an image.
type Version struct {
	Imported time.Time       `json:"imported"`
	Files    map[string]File `json:"files"`
	// Replaced is when the version stopped being current (zero while it
	// is, or never was replaced): configs naming it may have been served
	// until then.
	Replaced time.Time `json:"replaced,omitzero"`
	// LastServed is the last time the daemon served a config naming it.
	LastServed time.Time `json:"last_served,omitzero"`
}

// File is one file of a version.
type File struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Source string `json:"source"`
}

// HTTPCache is what a conditional request needs.
type HTTPCache struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	SHA256       string `json:"sha256"`
	Size         int64  `json:"size"`
}

// Store is the image store of one configuration.
type Store struct {
	tftpRoot  string
	imagesDir string
	stateDir  string
}

// New returns the store for tftpRoot, imagesDir (inside tftpRoot) and
// stateDir. It creates nothing.
func New(tftpRoot, imagesDir, stateDir string) (*Store, error) {
	rel, err := filepath.Rel(tftpRoot, imagesDir)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || !filepath.IsAbs(imagesDir) {
		return nil, fmt.Errorf("images_dir %s must lie inside tftp_root %s", imagesDir, tftpRoot)
	}
	return &Store{tftpRoot: tftpRoot, imagesDir: imagesDir, stateDir: stateDir}, nil
}

// FromConfig is the store of cfg's tftp_root, images_dir and state_dir.
func FromConfig(cfg *config.Config) (*Store, error) {
	return New(cfg.TFTPRoot, cfg.ImagesDir, cfg.StateDir)
}

// IndexPath is the index file, for watching.
func (s *Store) IndexPath() string { return filepath.Join(s.stateDir, IndexName) }

// Dir is images_dir.
func (s *Store) Dir() string { return s.imagesDir }

// LoadIndex reads the index without the lock; a missing index is empty.
func LoadIndex(path string) (*Index, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Index{Images: map[string]*Image{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	var ix Index
	if err := json.Unmarshal(data, &ix); err != nil {
		return nil, fmt.Errorf("image index %s: %w", path, err)
	}
	if ix.Images == nil {
		ix.Images = map[string]*Image{}
	}
	for name, im := range ix.Images {
		if CheckName("image", name) != nil || im == nil || im.Versions == nil {
			return nil, fmt.Errorf("image index %s: bad entry %q", path, name)
		}
	}
	return &ix, nil
}

// Load reads the store's index without the lock.
func (s *Store) Load() (*Index, error) { return LoadIndex(s.IndexPath()) }

// Path returns the path, relative to tftp_root, of file of image name's
// current version: what the template function `image` gives.
func (ix *Index) Path(rel, name, file string) (string, error) {
	im := ix.Images[name]
	if im == nil || im.Current == "" {
		return "", fmt.Errorf("image %q: %w", name, ErrNotFound)
	}
	if _, ok := im.Versions[im.Current].Files[file]; !ok {
		return "", fmt.Errorf("image %q version %s has no file %q: %w", name, im.Current, file, ErrNotFound)
	}
	return filepath.ToSlash(filepath.Join(rel, name, im.Current, file)), nil
}

// Fingerprint describes everything Path answers from: each image's current
// version and that version's files. Two indexes with the same fingerprint
// resolve every {{image}} alike, whatever else (serve times, old versions)
// differs.
func (ix *Index) Fingerprint() string {
	var b strings.Builder
	names := slices.Sorted(maps.Keys(ix.Images))
	for _, n := range names {
		im := ix.Images[n]
		b.WriteString(n + "=" + im.Current + ":")
		if v := im.Versions[im.Current]; v != nil {
			b.WriteString(strings.Join(slices.Sorted(maps.Keys(v.Files)), ","))
		}
		b.WriteString(";")
	}
	return b.String()
}

// Rel is images_dir relative to tftp_root, the prefix of every path Path
// gives.
func (s *Store) Rel() string {
	rel, _ := filepath.Rel(s.tftpRoot, s.imagesDir)
	return rel
}

// ErrBusy: another process (an import downloading) holds the index lock.
var ErrBusy = errors.New("image index busy (an import is running)")

// update runs change on the index under the lock and writes it back
// atomically if change returns nil.
func (s *Store) update(change func(ix *Index) error) error {
	return s.updateLock(unix.LOCK_EX, change)
}

// tryUpdate is update without waiting: it returns ErrBusy while another
// process holds the lock. The daemon uses it, so that an import that
// downloads for minutes never holds up its start or its shutdown.
func (s *Store) tryUpdate(change func(ix *Index) error) error {
	return s.updateLock(unix.LOCK_EX|unix.LOCK_NB, change)
}

func (s *Store) updateLock(how int, change func(ix *Index) error) error {
	if err := os.MkdirAll(s.stateDir, 0o700); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	err := atomicfile.Locked(filepath.Join(s.stateDir, lockName), how, func() error {
		ix, err := s.Load()
		if err != nil {
			return err
		}
		if err := change(ix); err != nil {
			return err
		}
		data, err := json.MarshalIndent(ix, "", "  ")
		if err != nil {
			return err
		}
		if err := atomicfile.Write(s.IndexPath(), append(data, '\n'), 0o600); err != nil {
			return fmt.Errorf("write image index: %w", err)
		}
		return nil
	})
	if errors.Is(err, atomicfile.ErrLockBusy) {
		return ErrBusy
	}
	return err
}

// versionsNewestFirst lists im's versions, newest import first.
func versionsNewestFirst(im *Image) []string {
	vs := make([]string, 0, len(im.Versions))
	for v := range im.Versions {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool {
		a, b := im.Versions[vs[i]], im.Versions[vs[j]]
		if !a.Imported.Equal(b.Imported) {
			return a.Imported.After(b.Imported)
		}
		return vs[i] < vs[j]
	})
	return vs
}

// Names lists the images, sorted.
func (ix *Index) Names() []string {
	names := make([]string, 0, len(ix.Images))
	for n := range ix.Images {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Versions lists image name's versions, newest first.
func (ix *Index) Versions(name string) []string {
	if im := ix.Images[name]; im != nil {
		return versionsNewestFirst(im)
	}
	return nil
}

// FileNames lists a version's files, sorted.
func (v *Version) FileNames() []string {
	names := make([]string, 0, len(v.Files))
	for n := range v.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
