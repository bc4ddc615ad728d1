package inventory

import (
	"bufio"
	"bytes"
	"net"
	"strings"
)

// lineIndex finds where sections and keys are in the file text. ini.v1
// parses values well but keeps no line numbers, so errors look the place
// up here, scanning the text the way ini.v1 reads it.
type lineIndex []sectionLines

type sectionLines struct {
	name string // as ini.v1 names it; "" for the lines before any header
	line int    // of the header; 0 for ""
	keys []keyLine
}

type keyLine struct {
	key, value string
	line       int
}

func indexLines(data []byte) lineIndex {
	x := lineIndex{{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, MaxFileSize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			end := strings.LastIndexByte(line, ']')
			if end < 0 {
				end = len(line)
			}
			x = append(x, sectionLines{name: strings.TrimSpace(line[1:end]), line: n})
		default:
			i := strings.IndexAny(line, "=:")
			if i < 0 {
				continue
			}
			cur := &x[len(x)-1]
			cur.keys = append(cur.keys, keyLine{key: strings.TrimSpace(line[:i]), value: line[i+1:], line: n})
		}
	}
	return x
}

// section returns the idx-th section called name.
func (x lineIndex) section(name string, idx int) *sectionLines {
	for i := range x {
		if x[i].name == name {
			if idx == 0 {
				return &x[i]
			}
			idx--
		}
	}
	return nil
}

// header is the line of the idx-th header of section name, 0 if not found.
func (x lineIndex) header(name string, idx int) int {
	if s := x.section(name, idx); s != nil {
		return s.line
	}
	return 0
}

// key is the line of the occ-th occurrence of key in that section; failing
// that, the section's header line.
func (x lineIndex) key(section string, idx int, key string, occ int) int {
	s := x.section(section, idx)
	if s == nil {
		return 0
	}
	for _, k := range s.keys {
		if k.key == key {
			if occ == 0 {
				return k.line
			}
			occ--
		}
	}
	return s.line
}

// keyValue is the line of the key in that section whose value lists m.
func (x lineIndex) keyValue(section string, idx int, key string, m net.HardwareAddr) int {
	s := x.section(section, idx)
	if s == nil {
		return 0
	}
	for _, k := range s.keys {
		if k.key != key {
			continue
		}
		v := k.value
		if i := strings.IndexAny(v, "#;"); i >= 0 {
			v = v[:i]
		}
		if ms, err := parseMACs(v); err == nil && containsMAC(ms, m) {
			return k.line
		}
	}
	return x.key(section, idx, key, 0)
}
