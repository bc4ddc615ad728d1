package nfsexport

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// entry is one (path, client) pair of an export table, as exportfs lists it
// or an exports(5) file declares it.
type entry struct {
	Path    string
	Client  string   // as written: an IP, a hostname, a wildcard, "<world>"…
	Options []string // in order; a later option overrides an earlier one
}

// fsid returns the entry's fsid as nfs-utils reads it: the last fsid=
// option, a number in C strtoul base-0 syntax (decimal, 0x hex, 0 octal) or
// "root", which means 0. A UUID fsid is not a number: ok is false.
func (e entry) fsid() (fsid uint32, ok bool) {
	for i := len(e.Options) - 1; i >= 0; i-- {
		v, found := strings.CutPrefix(e.Options[i], "fsid=")
		if !found {
			continue
		}
		return parseFSID(v)
	}
	return 0, false
}

// parseFSID parses an fsid= value the way nfs-utils does (strtoul with base
// 0, then stored in 32 bits), so that "0x10" and "020" count as 16.
func parseFSID(v string) (uint32, bool) {
	if v == "root" {
		return 0, true
	}
	base, digits := 10, v
	switch {
	case len(v) > 2 && (v[:2] == "0x" || v[:2] == "0X"):
		base, digits = 16, v[2:]
	case len(v) > 1 && v[0] == '0':
		base, digits = 8, v[1:]
	}
	// strconv would also accept underscores and signs; strtoul's syntax
	// has neither.
	for i := 0; i < len(digits); i++ {
		if digits[i] == '_' || digits[i] == '+' || digits[i] == '-' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(digits, base, 64)
	if err != nil {
		return 0, false
	}
	return uint32(n), true // nfs-utils keeps the low 32 bits
}

// toExport converts e when an Export can describe it: a single IPv4 client
// and a numeric fsid.
func (e entry) toExport() (Export, bool) {
	a, err := netip.ParseAddr(e.Client)
	if err != nil || !a.Is4() {
		return Export{}, false
	}
	fsid, ok := e.fsid()
	if !ok {
		return Export{}, false
	}
	return Export{Path: e.Path, Client: a, FSID: fsid}, true
}

// parseExportfsVerbose parses the output of `exportfs -v`: one line per
// (path, client) pair,
//
//	/short/path   <TAB>client(opt,opt,…)
//
// except that exportfs wraps a long path: the client then follows on the next
// line, indented by tabs. Paths are printed raw and may contain spaces, so a
// line is the whole path whenever the next line is an indented client. It is
// strict: anything else is an error rather than a silently missed fsid.
func parseExportfsVerbose(out string) ([]entry, error) {
	lines := strings.Split(out, "\n")
	var entries []entry
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], " \t\r")
		if line == "" {
			continue
		}
		if isIndented(line) {
			return nil, fmt.Errorf("exportfs -v line %d: client %q without a path", i+1, strings.TrimSpace(line))
		}
		if next := nextNonEmpty(lines, i+1); next >= 0 && isIndented(lines[next]) {
			client, opts, err := parseClientSpec(strings.TrimSpace(lines[next]))
			if err != nil {
				return nil, fmt.Errorf("exportfs -v line %d: %w", next+1, err)
			}
			entries = append(entries, entry{Path: line, Client: client, Options: opts})
			i = next
			continue
		}
		sep := strings.LastIndexAny(line, " \t")
		if sep < 0 {
			return nil, fmt.Errorf("exportfs -v line %d: path %q without a client", i+1, line)
		}
		path := strings.TrimRight(line[:sep], " \t")
		client, opts, err := parseClientSpec(line[sep+1:])
		if err != nil {
			return nil, fmt.Errorf("exportfs -v line %d: %w", i+1, err)
		}
		if path == "" {
			return nil, fmt.Errorf("exportfs -v line %d: empty path", i+1)
		}
		entries = append(entries, entry{Path: path, Client: client, Options: opts})
	}
	return entries, nil
}

func isIndented(line string) bool {
	return line != "" && (line[0] == ' ' || line[0] == '\t')
}

func nextNonEmpty(lines []string, from int) int {
	for j := from; j < len(lines); j++ {
		if strings.TrimSpace(lines[j]) != "" {
			return j
		}
	}
	return -1
}

// parseClientSpec splits "client(opt,opt)" as exportfs -v prints it.
func parseClientSpec(s string) (client string, opts []string, err error) {
	open := strings.IndexByte(s, '(')
	if open <= 0 || !strings.HasSuffix(s, ")") {
		return "", nil, fmt.Errorf("client %q is not CLIENT(OPTIONS)", s)
	}
	return s[:open], splitOptions(s[open+1 : len(s)-1]), nil
}

func splitOptions(s string) []string {
	var opts []string
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimSpace(o); o != "" {
			opts = append(opts, o)
		}
	}
	return opts
}

// parseExportsFile parses an exports(5) file such as /etc/exports:
//
//	# comment
//	/path  client1(opts) client2 (opts-for-everyone) \
//	       client3(opts)
//	"/path with spaces" -default,opts client4(more)
//	/path\040with\040octal  client5(opts)
//
// It yields one entry per client, its options being the line's "-" defaults
// followed by its own; a line without clients exports to "*". It is lenient,
// like a reader of a file it does not own must be: lines it cannot make sense
// of still give whatever options they name.
func parseExportsFile(data string) []entry {
	var entries []entry
	for _, line := range joinContinuations(data) {
		toks := tokenizeExportsLine(line)
		if len(toks) == 0 {
			continue
		}
		path := unescapeOctal(toks[0])
		var defaults []string
		var clients []entry
		for _, tok := range toks[1:] {
			if rest, ok := strings.CutPrefix(tok, "-"); ok {
				defaults = append(defaults, splitOptions(rest)...)
				continue
			}
			client, opts := tok, []string(nil)
			if open := strings.IndexByte(tok, '('); open >= 0 {
				client = tok[:open]
				opts = splitOptions(strings.TrimSuffix(tok[open+1:], ")"))
			}
			if client == "" {
				client = "*"
			}
			clients = append(clients, entry{Path: path, Client: client, Options: opts})
		}
		if len(clients) == 0 {
			clients = append(clients, entry{Path: path, Client: "*"})
		}
		for _, c := range clients {
			c.Options = append(append([]string(nil), defaults...), c.Options...)
			entries = append(entries, c)
		}
	}
	return entries
}

// joinContinuations splits data into logical lines: a backslash at the end
// of a line continues it, and "#" outside double quotes starts a comment.
func joinContinuations(data string) []string {
	var out []string
	var cur strings.Builder
	for _, raw := range strings.Split(data, "\n") {
		raw = strings.TrimRight(raw, "\r")
		if body, ok := strings.CutSuffix(raw, "\\"); ok {
			cur.WriteString(body)
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(raw)
		out = append(out, stripComment(cur.String()))
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, stripComment(cur.String()))
	}
	return out
}

func stripComment(line string) string {
	quoted := false
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '"':
			quoted = !quoted
		case '#':
			if !quoted {
				return line[:i]
			}
		}
	}
	return line
}

// tokenizeExportsLine splits at blanks outside double quotes (which it
// removes) and outside parentheses (where exportfs allows none, but a
// lenient reader should still see the options).
func tokenizeExportsLine(line string) []string {
	var toks []string
	var cur strings.Builder
	quoted, depth, inTok := false, 0, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '"':
			quoted = !quoted
			inTok = true
		case (c == ' ' || c == '\t') && !quoted && depth == 0:
			if inTok {
				toks = append(toks, cur.String())
				cur.Reset()
				inTok = false
			}
		default:
			if !quoted {
				if c == '(' {
					depth++
				} else if c == ')' && depth > 0 {
					depth--
				}
			}
			if !(depth > 0 && (c == ' ' || c == '\t')) {
				cur.WriteByte(c)
			}
			inTok = true
		}
	}
	if inTok {
		toks = append(toks, cur.String())
	}
	return toks
}

// unescapeOctal decodes the \ooo escapes exports files and etab use for
// bytes such as spaces in paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }
