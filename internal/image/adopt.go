package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// adoptedSource is the Source of a file adopted from disk: its origin was
// in the index write a crash lost.
const adoptedSource = "adopted from disk after an interrupted import"

// adoptLocked settles version directories that no index entry names. An
// import moves its version into place with one rename and then writes the
// index; a kill between the two leaves a complete version nobody lists,
// which list and prune would never show or remove. A version is named by
// the hash of its files, so it can be checked: one whose files hash to
// its name is adopted (imported at its directory's time, not current,
// replaced now so that garbage collection's grace runs from now), anything
// else is removed. The caller holds the index lock. Each is logged.
func (s *Store) adoptLocked(ix *Index, now time.Time, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	names, err := os.ReadDir(s.imagesDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("images_dir: %w", err)
	}
	for _, n := range names {
		if !n.IsDir() || CheckName("image", n.Name()) != nil {
			continue // .staging, or nothing an import made
		}
		dir := filepath.Join(s.imagesDir, n.Name())
		versions, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("image %s: %w", n.Name(), err)
		}
		for _, v := range versions {
			if !v.IsDir() || checkVersion(v.Name()) != nil {
				continue
			}
			if im := ix.Images[n.Name()]; im != nil && im.Versions[v.Name()] != nil {
				continue
			}
			p := filepath.Join(dir, v.Name())
			files, err := hashVersion(p)
			if err == nil && versionOf(files) == v.Name() {
				im := ix.Images[n.Name()]
				if im == nil {
					im = &Image{Versions: map[string]*Version{}}
					ix.Images[n.Name()] = im
				}
				imported := now
				if fi, err := os.Stat(p); err == nil {
					imported = fi.ModTime()
				}
				im.Versions[v.Name()] = &Version{Imported: imported.UTC(), Files: files, Replaced: now.UTC()}
				log.Warn("adopted an image version no index named (an import was interrupted after moving it into place)", "image", n.Name(), "version", v.Name(), "files", len(files))
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("remove unindexed version %s: %w", p, err)
			}
			log.Warn("removed an image version no index named whose files do not match its name", "image", n.Name(), "version", v.Name(), "err", err)
		}
	}
	return nil
}

// hashVersion hashes the files of a version directory, which holds only
// regular files.
func hashVersion(dir string) (map[string]File, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string]File{}
	for _, de := range des {
		if !de.Type().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", filepath.Join(dir, de.Name()))
		}
		f, err := os.Open(filepath.Join(dir, de.Name()))
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		files[de.Name()] = File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Source: adoptedSource}
	}
	if len(files) == 0 {
		return nil, errors.New("no files")
	}
	return files, nil
}
