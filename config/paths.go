package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotFound is wrapped by Find's error when no config file exists in any
// search path.
var ErrNotFound = errors.New("no config file found")

// FileName is the config file's name in the search paths.
const FileName = "pxebootfs.cfg"

// SearchPaths lists where Find looks, in order: the working directory, the
// home directory (as a dot file), then /etc, as the original tool did. The
// home entry is left out when there is no home directory.
func SearchPaths() []string {
	paths := []string{"./" + FileName}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		paths = append(paths, filepath.Join(home, "."+FileName))
	}
	return append(paths, "/etc/pxebootfs/"+FileName)
}

// Find returns explicit when it is not "", else the first of SearchPaths
// that exists. A path that exists but cannot be inspected (permission) is
// returned too, so that Load reports the real problem rather than a silent
// fall-through to the next file.
func Find(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	paths := SearchPaths()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w; looked in %s", ErrNotFound, strings.Join(paths, ", "))
}

// resolveExisting resolves symlinks in the longest existing prefix of path,
// so that two spellings of one directory compare equal even when the
// directory itself does not exist yet.
func resolveExisting(path string) string {
	rest := ""
	for cur := path; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return path
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}
