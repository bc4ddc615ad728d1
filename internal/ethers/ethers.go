// Package ethers reads ethers(5) files, the MAC-to-IPv4 table pxebootfs uses
// to answer pxelinux's 01-<mac> requests and to tell a node's MAC when it is
// asked for by IP.
//
// # Format
//
// One "MAC IP" pair per line, separated by whitespace; # starts a comment,
// whole-line or trailing; blank lines are ignored. A MAC is six hex groups of
// one or two digits separated by ':' or '-' (ethers(5) writes 8:0:20:1:2:3),
// in any case. The IP must be a dotted IPv4 address: ethers(5) also allows a
// hostname, but resolving names would make what a node gets depend on DNS at
// the moment it boots, so such lines are rejected.
//
// A MAC listed twice with different IPs is an error, as it is ambiguous; the
// same MAC and IP twice is harmless. Several MACs may share one IP, as a
// multi-homed node boots from whichever interface it likes.
package ethers

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
)

type mac [6]byte

// Table maps MACs to IPv4 addresses. A nil *Table is an empty table. It is
// immutable after Parse, so safe for concurrent use.
type Table struct {
	byMAC map[mac]entry
	byIP  map[netip.Addr][]mac // sorted
}

type entry struct {
	ip   netip.Addr
	line int
}

// maxLine bounds one line; ethers lines are a few dozen bytes, so anything
// longer is not an ethers file.
const maxLine = 4096

// Parse reads an ethers(5) table. Errors name the offending line.
func Parse(r io.Reader) (*Table, error) {
	t := &Table{byMAC: map[mac]entry{}, byIP: map[netip.Addr][]mac{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLine)
	n := 0
	for sc.Scan() {
		n++
		if err := t.addLine(n, sc.Text()); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return nil, fmt.Errorf("line %d: longer than %d bytes", n+1, maxLine)
		}
		return nil, fmt.Errorf("after line %d: %w", n, err)
	}
	for ip, ms := range t.byIP {
		sort.Slice(ms, func(i, j int) bool { return bytes.Compare(ms[i][:], ms[j][:]) < 0 })
		t.byIP[ip] = ms
	}
	return t, nil
}

// Load reads the ethers file at path.
func Load(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError already names the path
	}
	defer f.Close()
	t, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

func (t *Table) addLine(n int, line string) error {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	fields := strings.Fields(line)
	switch len(fields) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("%q has no IP address; want \"MAC IP\"", fields[0])
	case 2:
	default:
		return fmt.Errorf("unexpected %q after the IP address; want \"MAC IP\"", strings.Join(fields[2:], " "))
	}
	m, err := parseMAC(fields[0])
	if err != nil {
		return err
	}
	ip, err := parseIP(fields[1])
	if err != nil {
		return err
	}
	if old, ok := t.byMAC[m]; ok {
		if old.ip != ip {
			return fmt.Errorf("MAC %s maps to %s here but to %s on line %d", net.HardwareAddr(m[:]), ip, old.ip, old.line)
		}
		return nil
	}
	t.byMAC[m] = entry{ip: ip, line: n}
	t.byIP[ip] = append(t.byIP[ip], m)
	return nil
}

// parseMAC accepts ethers(5)'s forms, which net.ParseMAC does not: groups of
// one digit and '-' with short groups.
func parseMAC(s string) (mac, error) {
	var m mac
	sep := ":"
	if !strings.Contains(s, ":") {
		sep = "-"
	}
	groups := strings.Split(s, sep)
	if len(groups) != len(m) {
		return m, fmt.Errorf("%q is not a MAC address (six hex groups separated by ':' or '-')", s)
	}
	for i, g := range groups {
		if len(g) < 1 || len(g) > 2 {
			return m, fmt.Errorf("%q is not a MAC address: group %q must have one or two hex digits", s, g)
		}
		v, err := strconv.ParseUint(g, 16, 8)
		if err != nil {
			return m, fmt.Errorf("%q is not a MAC address: %q is not hex", s, g)
		}
		m[i] = byte(v)
	}
	return m, nil
}

func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case err == nil && a.Is4():
		return a, nil
	case err == nil:
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address; pxelinux names nodes by IPv4 only", s)
	case isHostname(s):
		return netip.Addr{}, fmt.Errorf("%q: hostname entries are not supported, use an IPv4 address", s)
	}
	return netip.Addr{}, fmt.Errorf("%q is not a valid IPv4 address", s)
}

// isHostname tells a name apart from a mistyped address, for a clearer error.
func isHostname(s string) bool {
	letter := false
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			letter = true
		case r >= '0' && r <= '9', r == '.', r == '-', r == '_':
		default:
			return false
		}
	}
	return letter
}

// Lookup returns the IPv4 address of mac.
func (t *Table) Lookup(hw net.HardwareAddr) (netip.Addr, bool) {
	if t == nil || len(hw) != len(mac{}) {
		return netip.Addr{}, false
	}
	e, ok := t.byMAC[mac(hw)]
	return e.ip, ok
}

// MACsFor returns the MACs mapped to ip, sorted by their bytes, so the first
// is a stable choice for a node asked for by IP. The slices are the caller's.
func (t *Table) MACsFor(ip netip.Addr) []net.HardwareAddr {
	if t == nil {
		return nil
	}
	ms := t.byIP[ip.Unmap()]
	if len(ms) == 0 {
		return nil
	}
	out := make([]net.HardwareAddr, len(ms))
	for i, m := range ms {
		out[i] = net.HardwareAddr(append([]byte(nil), m[:]...))
	}
	return out
}

// Len returns the number of MACs in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.byMAC)
}
