package inventory

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
)

// The inventory is read by one parser, this one, so that the values used
// and the line numbers in error messages can never disagree. It reads the
// INI subset the inventory needs, the way ini.v1 (which reads
// pxebootfs.cfg) reads it:
//
//   - blank lines and lines starting with # or ; are skipped;
//   - "[NAME]" starts a section (the text between '[' and the last ']',
//     trimmed); a section name may appear more than once;
//   - "KEY = VALUE" or "KEY: VALUE" sets a key (split at the first '=' or
//     ':'; both sides trimmed; a key may appear more than once);
//   - in a value, " #" or " ;" starts a comment, and then a value wrapped
//     in matching '…' or "…" loses the quotes.
//
// Continuation lines (a trailing '\') and multi-line quoted values are
// errors rather than guesses: no inventory field needs them.

// iniSection is one section: its header and its keys in order of first
// appearance, each with all its values.
type iniSection struct {
	name string // "" for the lines before any header
	line int    // of the header; 0 for ""
	keys []*iniKey
}

type iniKey struct {
	name   string
	values []iniValue // one per occurrence, in order
}

type iniValue struct {
	v    string
	line int
}

// line is the line of the key's occ-th occurrence (its first if there are
// fewer).
func (k *iniKey) lineOf(occ int) int {
	if occ >= len(k.values) {
		occ = 0
	}
	return k.values[occ].line
}

// key returns the section's key called name, nil if absent.
func (s *iniSection) key(name string) *iniKey {
	for _, k := range s.keys {
		if k.name == name {
			return k
		}
	}
	return nil
}

// keyLine is the line of key name's occ-th occurrence, or the header's.
func (s *iniSection) keyLine(name string, occ int) int {
	if k := s.key(name); k != nil {
		return k.lineOf(occ)
	}
	return s.line
}

// macLine is the line of the mac value that lists m.
func (s *iniSection) macLine(m net.HardwareAddr) int {
	if k := s.key("mac"); k != nil {
		for _, v := range k.values {
			if ms, err := parseMACs(v.v); err == nil && containsMAC(ms, m) {
				return v.line
			}
		}
	}
	return s.keyLine("mac", 0)
}

// syntaxError is a line the parser cannot read.
type syntaxError struct {
	line int
	msg  string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// parseINI splits data into sections. The first section is always the
// unnamed one of the lines before any header.
func parseINI(data []byte) ([]*iniSection, error) {
	secs := []*iniSection{{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, MaxFileSize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			end := strings.LastIndexByte(line, ']')
			if end < 0 {
				return nil, &syntaxError{n, fmt.Sprintf("section header %q has no closing ']'", line)}
			}
			secs = append(secs, &iniSection{name: strings.TrimSpace(line[1:end]), line: n})
		default:
			i := strings.IndexAny(line, "=:")
			if i <= 0 {
				return nil, &syntaxError{n, fmt.Sprintf("%q is neither a [section] nor KEY = VALUE", line)}
			}
			v, err := value(line[i+1:])
			if err != nil {
				return nil, &syntaxError{n, err.Error()}
			}
			s := secs[len(secs)-1]
			name := strings.TrimSpace(line[:i])
			k := s.key(name)
			if k == nil {
				k = &iniKey{name: name}
				s.keys = append(s.keys, k)
			}
			k.values = append(k.values, iniValue{v: v, line: n})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return secs, nil
}

// value cleans a raw value: trimmed, inline comment cut, quotes removed.
func value(raw string) (string, error) {
	v := strings.TrimSpace(raw)
	if strings.HasPrefix(v, `"""`) || strings.HasPrefix(v, "`") {
		return "", fmt.Errorf("multi-line quoted values are not supported")
	}
	if strings.HasSuffix(v, `\`) {
		return "", fmt.Errorf("continuation lines (a trailing '\\') are not supported")
	}
	if i := strings.Index(v, " #"); i >= 0 {
		v = strings.TrimSpace(v[:i])
	} else if i := strings.Index(v, " ;"); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	return v, nil
}
