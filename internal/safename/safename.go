// Package safename is the one rule for the names admins give what
// pxebootfs stores (boot images and their files, roots): each is a single
// path component inside a directory pxebootfs owns, so it must never
// climb out of it, hide among pxebootfs's own entries or need quoting.
package safename

import "fmt"

// Check checks s, a kind (e.g. "image name") for messages: letters,
// digits, '.', '_', '-'; 1 to 64 bytes; not starting with '.' (hidden
// names are pxebootfs's own, e.g. .staging; this also rules out "." and
// "..").
func Check(kind, s string) error {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return fmt.Errorf("%s %q: must be 1 to 64 characters and not start with '.'", kind, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%s %q: character %q is not allowed (letters, digits, '.', '_', '-')", kind, s, c)
		}
	}
	return nil
}
