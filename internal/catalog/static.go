package catalog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/beneath"
	"github.com/pxebootfs/pxebootfs/internal/pxename"
)

// maxStatic bounds what one open of a static file holds in memory. pxelinux
// configs and menus are kilobytes; kernels and initrds belong beside
// pxelinux.cfg, not inside it.
const maxStatic = 64 << 20

// peekStatic reads a static file whole: its content is the version a
// lookup sees.
func peekStatic(e Entry) (Content, error) {
	b, mtime, err := readStaticAt(e)
	if err != nil {
		return Content{}, err
	}
	return Content{Data: b, Mtime: mtime, Final: true}, nil
}

func readStatic(e Entry) ([]byte, error) {
	b, _, err := readStaticAt(e)
	return b, err
}

// readStaticAt reads a static file and its mtime from one open
// descriptor, opened beneath the static directory with no symlink
// followed: a symlink renamed over the file after the rule saw a regular
// file is refused here, not served.
func readStaticAt(e Entry) ([]byte, time.Time, error) {
	f, err := beneath.Open(filepath.Dir(e.Static), filepath.Base(e.Static), 0)
	if errors.Is(err, beneath.ErrSymlink) {
		return nil, time.Time{}, fmt.Errorf("static %s: %w: %w", e.Static, err, ErrNotServed)
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, time.Time{}, fmt.Errorf("static %s: not a regular file: %w", e.Static, ErrNotServed)
	}
	if fi.Size() > maxStatic {
		return nil, time.Time{}, fmt.Errorf("static %s: %d bytes is larger than %d", e.Static, fi.Size(), maxStatic)
	}
	b := make([]byte, fi.Size())
	n, err := io.ReadFull(f, b)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// Shrunk while we read: serve what is there; the next read sees
		// the rest as another version.
		err = nil
	}
	return b[:n], fi.ModTime(), err
}

// DirEntry is one name of a directory listing.
type DirEntry struct {
	Name string
	Dir  bool // a static subdirectory
}

// List is what ls of the mount shows: provisioned nodes by the loader's
// name for them (those allow still serves), the static directory's files
// and served subdirectories, and built-in files the admin has not
// replaced, sorted by name. Nothing is resolved, rendered or generated for
// it: listing a mount of 10,000 nodes runs no template and no content
// generator.
func (c *Catalog) List() []DirEntry {
	s := c.cur.Load()
	var out []DirEntry
	seen := map[string]bool{}
	for _, n := range c.Nodes() {
		if name := c.ld.Prefix + n.ID.String(); s.allow.Allowed(n.ID.Addr()) {
			out = append(out, DirEntry{Name: name})
			seen[name] = true
		}
	}
	files, dirs := c.staticEntries(s)
	for _, name := range files {
		if !seen[name] {
			out = append(out, DirEntry{Name: name})
			seen[name] = true
		}
	}
	for _, name := range dirs {
		out = append(out, DirEntry{Name: name, Dir: true})
		seen[name] = true
	}
	for name := range c.ld.Builtins {
		if !seen[name] {
			out = append(out, DirEntry{Name: name})
		}
	}
	slices.SortFunc(out, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// StaticNames lists the static directory's regular files that we would
// serve (valid names not shadowed by a node name), sorted.
func (c *Catalog) StaticNames() []string {
	names, _ := c.staticEntries(c.cur.Load())
	return names
}

// staticEntries lists the static directory once: the regular files served
// (names a node name shadows left out) and, for loaders that serve them,
// the subdirectories.
func (c *Catalog) staticEntries(s *snapshot) (files, dirs []string) {
	dir := s.lc.StaticDir
	if dir == "" {
		return nil, nil
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		c.log.Warn("list static directory", "loader", c.ld.Name, "dir", dir, "err", err)
		return nil, nil
	}
	for _, de := range des {
		if pxename.CheckStatic(de.Name()) != nil {
			continue
		}
		if de.IsDir() {
			if c.ld.StaticSubdirs {
				dirs = append(dirs, de.Name())
			}
			continue
		}
		if !de.Type().IsRegular() {
			continue
		}
		if pn, err := c.ld.Parse(de.Name()); err == nil && s.shadowed(pn) {
			continue
		}
		files = append(files, de.Name())
	}
	return files, dirs
}
