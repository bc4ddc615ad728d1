// Package inifile reads the INI files pxebootfs reads — the config file and
// the inventory — in one dialect, with gopkg.in/ini.v1 deciding what every
// line says and this package numbering the lines.
//
// ini.v1 keeps no line numbers, and a second, hand-written pass to find them
// could disagree with the values ini.v1 returned. So the file is handed to
// ini.v1 one physical line at a time: every section header and every value
// is ini.v1's reading of exactly that line, and its line number cannot be
// wrong. The dialect is ini.v1's with these options, for both files:
//
//   - blank lines and lines starting with # or ; are skipped;
//   - "[NAME]" starts a section; the name is trimmed, and a name may appear
//     more than once (the caller decides whether that is an error);
//   - "KEY = VALUE" or "KEY: VALUE"; a key may appear more than once, and
//     every occurrence is kept with its line;
//   - only " #" and " ;" start an inline comment, so a path such as
//     /srv/a#b stays whole; a value in matching '…' or "…" loses the quotes;
//   - key names are case-insensitive (as Python's ConfigParser, which read
//     the original tool's config), except the part after the first '.', which
//     names something of the admin's own (var.NAME is .Vars.NAME in
//     templates) and keeps its case;
//   - a value is one line: continuation lines (a trailing '\') and multi-line
//     quoted values are errors rather than guesses.
package inifile

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/ini.v1"
)

// File is a parsed INI file. Sections[0] is always the unnamed section of
// the lines before any header.
type File struct {
	Sections []*Section
}

// Section is one section: its header and its keys in order of first
// appearance.
type Section struct {
	Name string // "" for the lines before any header
	Line int    // of the header; 0 for ""
	Keys []*Key
}

// Key is one key of a section with every value it was given.
type Key struct {
	Name   string  // folded: see FoldKey
	Values []Value // one per occurrence, in order
}

// Value is one occurrence of a key.
type Value struct {
	V    string
	Line int
}

// SyntaxError is a line ini.v1 cannot read, or one this dialect refuses.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// options is the one ini.v1 dialect. Continuations are refused before ini.v1
// sees the line (it would keep the backslash), and each line is read alone,
// so nothing can span lines.
var options = ini.LoadOptions{
	IgnoreContinuation:       true,
	SpaceBeforeInlineComment: true,
}

// Parse reads data. maxLine bounds one line's length (bufio's limit).
func Parse(data []byte, maxLine int) (*File, error) {
	f := &File{Sections: []*Section{{}}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxLine)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		trimmed := bytes.TrimSpace(line)
		if n == 1 {
			trimmed = bytes.TrimPrefix(trimmed, []byte("\ufeff"))
		}
		if len(trimmed) == 0 || trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		if trimmed[len(trimmed)-1] == '\\' {
			return nil, &SyntaxError{n, "continuation lines (a trailing '\\') are not supported; write the value on one line"}
		}
		one, err := ini.LoadSources(options, trimmed)
		if err != nil {
			return nil, &SyntaxError{n, err.Error()}
		}
		secs := one.Sections()
		if trimmed[0] == '[' {
			// ini.v1 lists its default section first; a header adds one more
			// (or, for [DEFAULT], is the default itself).
			name := strings.TrimSpace(secs[len(secs)-1].Name())
			f.Sections = append(f.Sections, &Section{Name: name, Line: n})
			continue
		}
		keys := secs[0].Keys()
		if len(keys) != 1 {
			return nil, &SyntaxError{n, fmt.Sprintf("%q is neither a [section] nor KEY = VALUE", trimmed)}
		}
		s := f.Sections[len(f.Sections)-1]
		s.add(FoldKey(keys[0].Name()), Value{V: keys[0].Value(), Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

// FoldKey is the key name by which a key is known: lower case up to the
// first '.', as written after it.
func FoldKey(name string) string {
	if i := strings.IndexByte(name, '.'); i >= 0 {
		return strings.ToLower(name[:i]) + name[i:]
	}
	return strings.ToLower(name)
}

func (s *Section) add(name string, v Value) {
	k := s.Key(name)
	if k == nil {
		k = &Key{Name: name}
		s.Keys = append(s.Keys, k)
	}
	k.Values = append(k.Values, v)
}

// Key returns the section's key called name (folded), nil if absent.
func (s *Section) Key(name string) *Key {
	for _, k := range s.Keys {
		if k.Name == name {
			return k
		}
	}
	return nil
}

// KeyLine is the line of key name's occ-th occurrence (its first if there
// are fewer), or the header's if the key is absent.
func (s *Section) KeyLine(name string, occ int) int {
	if k := s.Key(name); k != nil {
		return k.LineOf(occ)
	}
	return s.Line
}

// LineOf is the line of the key's occ-th occurrence (its first if there are
// fewer).
func (k *Key) LineOf(occ int) int {
	if occ >= len(k.Values) {
		occ = 0
	}
	return k.Values[occ].Line
}

// Strings are the key's values in order.
func (k *Key) Strings() []string {
	out := make([]string, len(k.Values))
	for i, v := range k.Values {
		out[i] = v.V
	}
	return out
}
