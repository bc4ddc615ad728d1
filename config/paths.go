package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pxebootfs/pxebootfs/internal/inifile"
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
// that this process can read. One it cannot (a home directory not
// searchable, a file not readable: permission denied) is passed over, as a
// missing one is, so that `sudo pxebootfs …` finds /etc/pxebootfs; if none
// is found, the error names the ones passed over and why.
func Find(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	paths := SearchPaths()
	var skipped []string
	for _, p := range paths {
		_, err := os.Stat(p)
		if err == nil {
			err = syscall.Access(p, 4) // R_OK
		}
		switch {
		case err == nil:
			return p, nil
		case !errors.Is(err, fs.ErrNotExist):
			skipped = append(skipped, fmt.Sprintf("%s (%v)", p, err))
		}
	}
	err := fmt.Errorf("%w; looked in %s", ErrNotFound, strings.Join(paths, ", "))
	if len(skipped) > 0 {
		err = fmt.Errorf("%w; could not read %s", err, strings.Join(skipped, ", "))
	}
	return "", err
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

// StateDirOf is the state_dir of the config file at path, read leniently:
// only that key, whatever else is wrong with the file. The admin commands
// that talk to a running daemon need nothing more (its control socket
// lives there), so a typo elsewhere in the file does not keep them from
// asking the daemon, which then reports the typo itself.
func StateDirOf(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	f, err := inifile.Parse(data, maxConfigLine)
	if err != nil {
		return "", err
	}
	var v string
	for _, s := range f.Sections {
		if k := s.Key("state_dir"); s.Name == Section && k != nil {
			v = k.Values[len(k.Values)-1].V
		}
	}
	if v == "" {
		return DefaultStateDir, nil
	}
	if !filepath.IsAbs(v) {
		v = filepath.Join(filepath.Dir(absOrSame(path)), v)
	}
	return filepath.Clean(v), nil
}
