package overlay

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
)

// maxOptionLen bounds a mount option string: mount(2) copies at most one
// page of option data, so a longer string would be cut short by the kernel
// rather than rejected.
const maxOptionLen = 4095

// checkOptionPath rejects a path that cannot be put into an overlayfs or
// aufs option string verbatim. Both split options on ',' and layer lists on
// ':'; overlayfs takes '\' as an escape; '=' separates an aufs branch from
// its mode; whitespace and control characters are escaped in the mount
// table, so an adopted mount would no longer match. Escaping instead of
// rejecting would make a mistake here mount the wrong directory.
func checkOptionPath(what, p string) error {
	if p == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s %q is not an absolute path", what, p)
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("%s %q is not a clean path (want %q)", what, p, filepath.Clean(p))
	}
	for _, r := range p {
		switch {
		case r == ',' || r == ':' || r == '\\' || r == '=':
			return fmt.Errorf("%s %q contains %q, which mount option strings use as a separator or escape", what, p, r)
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return fmt.Errorf("%s %q contains whitespace or a control character (%q), which mount options cannot carry", what, p, r)
		case r == unicode.ReplacementChar:
			return fmt.Errorf("%s %q is not valid UTF-8", what, p)
		}
	}
	return nil
}

// reservedKeys are the options each backend sets itself; Extra must not
// override them, least of all index and nfs_export, without which node
// roots cannot be exported.
var reservedKeys = map[Type][]string{
	Overlayfs: {"lowerdir", "upperdir", "workdir", "index", "nfs_export"},
	AUFS:      {"br"},
}

// ParseType is the Type named s, for config's overlay_type.
func ParseType(s string) (Type, error) {
	switch t := Type(s); t {
	case Overlayfs, AUFS:
		return t, nil
	}
	return "", fmt.Errorf("%q is not one of %s, %s", s, Overlayfs, AUFS)
}

// CheckOptions validates extra mount options for backend t, as config's
// overlay_options: the rules Mount applies, so that a config that would
// fail at the first mount fails when it is loaded.
func CheckOptions(t Type, extra []string) error { return checkExtra(t, extra) }

// CheckPath checks a directory path that goes into mount options (see
// checkOptionPath), for config's node_dir, root_dir and overlay_dir.
func CheckPath(what, p string) error { return checkOptionPath(what, p) }

// checkExtra validates extra mount options for backend t.
func checkExtra(t Type, extra []string) error {
	for _, e := range extra {
		if e == "" {
			return fmt.Errorf("extra mount option is empty")
		}
		if strings.ContainsRune(e, ',') {
			return fmt.Errorf("extra mount option %q contains ','; give each option separately", e)
		}
		for _, r := range e {
			if unicode.IsSpace(r) || unicode.IsControl(r) {
				return fmt.Errorf("extra mount option %q contains whitespace or a control character", e)
			}
		}
		key, _, _ := strings.Cut(e, "=")
		for _, k := range reservedKeys[t] {
			if key == k {
				return fmt.Errorf("extra mount option %q overrides %s, which %s sets itself", e, k, t)
			}
		}
	}
	return nil
}

// overlayOptions builds the overlayfs option string.
func overlayOptions(lower, upper, work string, extra []string) (string, error) {
	for _, p := range []struct{ what, path string }{{"lower dir", lower}, {"upper dir", upper}, {"work dir", work}} {
		if err := checkOptionPath(p.what, p.path); err != nil {
			return "", err
		}
	}
	if err := checkExtra(Overlayfs, extra); err != nil {
		return "", err
	}
	opts := append([]string{
		"lowerdir=" + lower,
		"upperdir=" + upper,
		"workdir=" + work,
		"index=on",
		"nfs_export=on",
	}, extra...)
	return joinOptions(opts)
}

// aufsOptions builds the aufs option string: one writable branch over one
// read-only branch.
func aufsOptions(upper, lower string, extra []string) (string, error) {
	for _, p := range []struct{ what, path string }{{"upper dir", upper}, {"lower dir", lower}} {
		if err := checkOptionPath(p.what, p.path); err != nil {
			return "", err
		}
	}
	if err := checkExtra(AUFS, extra); err != nil {
		return "", err
	}
	return joinOptions(append([]string{"br=" + upper + "=rw:" + lower + "=ro"}, extra...))
}

func joinOptions(opts []string) (string, error) {
	s := strings.Join(opts, ",")
	if len(s) > maxOptionLen {
		return "", fmt.Errorf("mount options are %d bytes, more than the %d mount(2) accepts: %s", len(s), maxOptionLen, s)
	}
	return s, nil
}
