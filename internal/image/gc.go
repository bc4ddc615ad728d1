package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Policy is when an old version may go.
type Policy struct {
	// Keep is how many newest versions of each image are always kept.
	Keep int
	// Grace: a version is kept while a config naming it was served, or
	// it was current, less than Grace ago.
	Grace time.Duration
	// Held, if set, names versions something else keeps alive (the kernel
	// of a root generation nodes may boot): never pruned.
	Held func(VersionRef) bool
}

// Defaults of the image_keep and image_grace keys.
const (
	DefaultKeep  = 3
	DefaultGrace = time.Hour
)

// lastUse is the last moment a config naming v may have been served: when
// it was last served, or (served or not, with the daemon's record lost in
// a crash) when it stopped being current.
func lastUse(v *Version) time.Time {
	if v.LastServed.After(v.Replaced) {
		return v.LastServed
	}
	return v.Replaced
}

// Use makes version the current one of image name (a rollback).
func (s *Store) Use(name, version string, now time.Time) (previous string, err error) {
	if err := CheckName("image name", name); err != nil {
		return "", err
	}
	if err := checkVersion(version); err != nil {
		return "", err
	}
	err = s.update(func(ix *Index) error {
		im := ix.Images[name]
		if im == nil {
			return fmt.Errorf("image %q: %w", name, ErrNotFound)
		}
		v := im.Versions[version]
		if v == nil {
			return fmt.Errorf("image %q has no version %s: %w", name, version, ErrNotFound)
		}
		previous = im.Current
		if previous == version {
			return nil
		}
		if old := im.Versions[previous]; old != nil {
			old.Replaced = now.UTC()
		}
		v.Replaced = time.Time{}
		im.Current = version
		return nil
	})
	return previous, err
}

// Remove removes one version of image name, or (version "") the whole
// image. The current version is never removed alone; a version whose last
// use is within grace needs force.
func (s *Store) Remove(name, version string, grace time.Duration, force bool, now time.Time) (removed []string, err error) {
	if err := CheckName("image name", name); err != nil {
		return nil, err
	}
	if version != "" {
		if err := checkVersion(version); err != nil {
			return nil, err
		}
	}
	err = s.update(func(ix *Index) error {
		im := ix.Images[name]
		if im == nil {
			return fmt.Errorf("image %q: %w", name, ErrNotFound)
		}
		var vs []string
		if version != "" {
			if im.Versions[version] == nil {
				return fmt.Errorf("image %q has no version %s: %w", name, version, ErrNotFound)
			}
			if version == im.Current {
				return fmt.Errorf("image %q version %s is current; make another current first (image use) or remove the whole image", name, version)
			}
			vs = []string{version}
		} else {
			vs = versionsNewestFirst(im)
		}
		for _, v := range vs {
			ver := im.Versions[v]
			in := v == im.Current || now.Sub(lastUse(ver)) < grace
			if in && !force {
				return fmt.Errorf("image %q version %s may still be booting (current, or served within %v); -force removes it anyway: %w", name, v, grace, ErrInGrace)
			}
		}
		for _, v := range vs {
			if err := s.removeDir(name, v); err != nil {
				return err
			}
			delete(im.Versions, v)
			removed = append(removed, v)
		}
		if version == "" {
			delete(ix.Images, name)
			os.Remove(filepath.Join(s.imagesDir, name))
		}
		return nil
	})
	return removed, err
}

// removeDir moves a version out of sight into staging, then deletes it. A
// tftpd still reading one of its files keeps reading it (unlinked files
// live on while open).
func (s *Store) removeDir(name, version string) error {
	dir := filepath.Join(s.imagesDir, name, version)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	stage, err := s.newStaging()
	if err != nil {
		return err
	}
	aside := filepath.Join(stage, version)
	if err := os.Rename(dir, aside); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return os.RemoveAll(stage)
}

// Prune removes every version that is not current, not among its image's
// Keep newest, and not used within Grace.
func (s *Store) Prune(p Policy, now time.Time) (map[string][]string, error) {
	return s.prune(s.update, p, now)
}

// PruneIfIdle is Prune, unless an import holds the index (ErrBusy): the
// daemon's periodic prune never waits for a download.
func (s *Store) PruneIfIdle(p Policy, now time.Time) (map[string][]string, error) {
	return s.prune(s.tryUpdate, p, now)
}

func (s *Store) prune(update func(func(*Index) error) error, p Policy, now time.Time) (removed map[string][]string, err error) {
	removed = map[string][]string{}
	err = update(func(ix *Index) error {
		if err := s.cleanStagingLocked(); err != nil {
			return err
		}
		for name, im := range ix.Images {
			for i, v := range versionsNewestFirst(im) {
				ver := im.Versions[v]
				if v == im.Current || i < p.Keep || now.Sub(lastUse(ver)) < p.Grace || p.Held != nil && p.Held(VersionRef{name, v}) {
					continue
				}
				if err := s.removeDir(name, v); err != nil {
					return err
				}
				delete(im.Versions, v)
				removed[name] = append(removed[name], v)
			}
		}
		return nil
	})
	return removed, err
}

// RecordServed notes that configs naming these versions were served, each
// at its time. It does not wait for the lock: ErrBusy means "try again
// later".
func (s *Store) RecordServed(served map[VersionRef]time.Time) error {
	if len(served) == 0 {
		return nil
	}
	return s.tryUpdate(func(ix *Index) error {
		for ref, at := range served {
			if im := ix.Images[ref.Image]; im != nil {
				if ver := im.Versions[ref.Version]; ver != nil && at.After(ver.LastServed) {
					ver.LastServed = at.UTC()
				}
			}
		}
		return nil
	})
}
