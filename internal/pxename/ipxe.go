package pxename

import (
	"net/netip"
	"strings"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

var errIPXEForm = notNode("neither 8 hex digits, 01-<mac> nor a dotted IPv4 address")

// ParseIPXE classifies a name under the iPXE mount, which a web server
// serves: a node's script is asked for by what its boot script can spell.
// iPXE's ${ip:hexraw} gives the IP as 8 lower-case hex digits (upper case
// is accepted too), ${mac:hexhyp} the MAC as aa-bb-cc-dd-ee-ff behind
// "01-", and a web server can pick the file by the client's address
// (nginx's $remote_addr), a dotted IPv4 as netip prints it.
func ParseIPXE(name string) (Name, error) {
	switch {
	case name == "":
		return Name{}, errEmpty
	case len(name) > MaxNameLen:
		return Name{}, errTooLong
	case len(name) == hexIPLen:
		id, err := node.ParseHex(strings.ToUpper(name))
		if err != nil {
			return Name{}, errNotHex8
		}
		return Name{Kind: KindIP, ID: id}, nil
	case strings.HasPrefix(name, macPrefix):
		mac, err := parseMACName(macPrefix + strings.ToLower(name[len(macPrefix):]))
		if err != nil {
			return Name{}, err
		}
		return Name{Kind: KindMAC, MAC: mac}, nil
	case strings.Count(name, ".") == 3:
		addr, err := netip.ParseAddr(name)
		if err != nil || !addr.Is4() || addr.String() != name {
			return Name{}, errIPXEForm
		}
		id, err := node.FromAddr(addr)
		if err != nil {
			return Name{}, errIPXEForm
		}
		return Name{Kind: KindIP, ID: id}, nil
	}
	return Name{}, errIPXEForm
}
