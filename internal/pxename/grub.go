package pxename

import (
	"net/netip"
	"strings"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// GRUBPrefix starts every per-node GRUB config name.
const GRUBPrefix = "grub.cfg-"

var (
	errNotGRUB   = notNode("not grub.cfg-<node>")
	errGRUBForm  = notNode("grub.cfg- followed by neither 01-<mac>, <mac with colons>, 8 hex digits nor a dotted IPv4 address")
	errGRUBColon = notNode("MAC is not 6 lower-case hex pairs joined by ':'")
)

// ParseGRUB classifies a name under GRUB's prefix directory. GRUB 2.12 and
// later ask for grub.cfg-01-<mac with dashes> and grub.cfg-<8 hex digits of
// the IP> (then shorter prefixes, which are not nodes); the built-in
// grub.cfg chains to grub.cfg-<mac with colons> and grub.cfg-<dotted IP>
// (GRUB's $net_default_mac and $net_default_ip), which 2.06 can reach.
// Only canonical spellings are nodes: lower-case MACs, upper-case hex,
// dotted IPv4 as netip prints it. Everything else is ErrNotNode (a static
// or generated name, or not found).
func ParseGRUB(name string) (Name, error) {
	if len(name) > MaxNameLen {
		return Name{}, errTooLong
	}
	rest, ok := strings.CutPrefix(name, GRUBPrefix)
	if !ok {
		return Name{}, errNotGRUB
	}
	switch {
	case len(rest) == hexIPLen:
		id, err := node.ParseHex(rest)
		if err != nil {
			return Name{}, errNotHex8
		}
		return Name{Kind: KindIP, ID: id}, nil
	case strings.HasPrefix(rest, macPrefix):
		mac, err := parseMACName(rest)
		if err != nil {
			return Name{}, err
		}
		return Name{Kind: KindMAC, MAC: mac}, nil
	case strings.Count(rest, ":") == 5:
		// "aa:bb:cc:dd:ee:ff" is "01-aa-bb-cc-dd-ee-ff" in other dress.
		if len(rest) != 17 || strings.ToLower(rest) != rest {
			return Name{}, errGRUBColon
		}
		mac, err := parseMACName(macPrefix + strings.ReplaceAll(rest, ":", "-"))
		if err != nil {
			return Name{}, errGRUBColon
		}
		return Name{Kind: KindMAC, MAC: mac}, nil
	case strings.Count(rest, ".") == 3:
		addr, err := netip.ParseAddr(rest)
		if err != nil || !addr.Is4() || addr.String() != rest {
			return Name{}, errGRUBForm
		}
		id, err := node.FromAddr(addr)
		if err != nil {
			return Name{}, errGRUBForm
		}
		return Name{Kind: KindIP, ID: id}, nil
	}
	return Name{}, errGRUBForm
}
