// Package atomicfile replaces whole files so that a crash at any instant
// leaves either the old or the new content under the name, never a mix or
// an empty file. It is the one implementation of that algorithm in
// pxebootfs: the registry, the exports file and Ganesha's managed file all
// use it.
//
// The new content goes to a temporary file in the same directory (so the
// rename cannot cross filesystems), which is fsynced, given its mode,
// renamed over the name, and then the directory is fsynced so that the
// rename itself survives a power loss. Temporary names start with "." so
// that readers of a directory of config snippets (exportfs reads
// /etc/exports.d/*.exports) never pick one up.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// tempPattern is the os.CreateTemp pattern of path's temporary files.
func tempPattern(path string) string { return "." + filepath.Base(path) + ".tmp-*" }

// Write replaces path with data, mode perm. The directory must exist.
func Write(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPattern(path))
	if err != nil {
		return fmt.Errorf("replace %s: create temp file: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("replace %s: write %s: %w", path, tmp, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("replace %s: chmod %s: %w", path, tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("replace %s: fsync %s: %w", path, tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("replace %s: close %s: %w", path, tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: rename %s: %w", path, tmp, err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s for fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// RemoveStale deletes the temporary files that writers of path killed in
// the middle of Write left behind, and returns their names. Only the
// process that owns path (holds its lock) may call it: another writer's
// temporary file could be in use.
func RemoveStale(path string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern(path)))
	if err != nil {
		return nil, fmt.Errorf("list temp files of %s: %w", path, err)
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove stale temp file: %w", err)
		}
	}
	return matches, nil
}
