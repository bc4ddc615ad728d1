// Package pxename decides which names under pxelinux.cfg/ are node names
// that pxebootfs serves, and converts between those names and addresses.
//
// pxelinux asks, in order, for pxelinux.cfg/<UUID>, 01-<mac>, the IPv4
// address as 8 upper-case hex digits, ever shorter prefixes of those digits,
// and finally "default". Only two of these identify one node, so only two
// are node names:
//
//   - 8 hex digits: an IPv4 address ("C0A80102" is 192.168.1.2). Upper case
//     is what pxelinux sends; lower and mixed case are accepted too.
//   - "01-" and six lower-case hex pairs joined by '-': an Ethernet MAC
//     ("01-aa-bb-cc-dd-ee-ff"), exactly as pxelinux sends it.
//
// Every other name is "not a node name" (ErrNotNode): UUIDs, hex prefixes,
// other ARP hardware types, upper-case MACs, anything with spaces, slashes,
// NUL or non-ASCII bytes. Names come from TFTP clients, so Parse treats
// them as hostile and never allocates to reject one: rejection is the
// common case (every boot asks for a UUID and several prefixes first).
//
// The package also holds the allow policy (which IPv4 addresses may get a
// node config at all) and the check for static file names served beside
// node names.
package pxename

import (
	"errors"
	"net"
	"strconv"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// MaxNameLen is the longest file name we look at; longer names are
// rejected before any other work (NAME_MAX on Linux).
const MaxNameLen = 255

// Kind tells which form a node name has.
type Kind int

const (
	// KindIP is the 8-hex-digit IPv4 form. The zero Kind is deliberately
	// not a valid kind, so a zero Name is recognisably empty.
	KindIP Kind = iota + 1
	// KindMAC is the "01-" Ethernet MAC form.
	KindMAC
)

func (k Kind) String() string {
	switch k {
	case KindIP:
		return "ip"
	case KindMAC:
		return "mac"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Name is a parsed node name. ID is set for KindIP, MAC for KindMAC.
type Name struct {
	Kind Kind
	ID   node.ID          // KindIP: the node the hex digits name
	MAC  net.HardwareAddr // KindMAC: 6 bytes
}

// String gives the canonical file name: upper-case hex for KindIP, the
// pxelinux MAC name for KindMAC, "" for an invalid Name.
func (n Name) String() string {
	switch n.Kind {
	case KindIP:
		return n.ID.String()
	case KindMAC:
		return MACName(n.MAC)
	}
	return ""
}

// ErrNotNode is wrapped by every Parse error.
var ErrNotNode = errors.New("not a node name")

// ErrBadName is wrapped by every CheckStatic error.
var ErrBadName = errors.New("bad file name")

// reasonError carries a fixed reason. Errors are built once at init so that
// rejecting a name costs no allocation; the name itself is not included for
// the same reason, and because callers already know it (and should quote
// it themselves if they log it: it is client-controlled).
type reasonError struct {
	msg  string
	kind error
}

func (e *reasonError) Error() string { return e.msg }
func (e *reasonError) Unwrap() error { return e.kind }

func notNode(reason string) error {
	return &reasonError{msg: ErrNotNode.Error() + ": " + reason, kind: ErrNotNode}
}

func badName(reason string) error {
	return &reasonError{msg: ErrBadName.Error() + ": " + reason, kind: ErrBadName}
}

var (
	errEmpty      = notNode("empty")
	errTooLong    = notNode("longer than " + strconv.Itoa(MaxNameLen) + " bytes")
	errNotHex8    = notNode("not 8 hex digits")
	errNotForm    = notNode("neither 8 hex digits nor 01-<mac>")
	errHWType     = notNode("hardware type is not 01 (Ethernet)")
	errMACPairs   = notNode("MAC is not 6 hex pairs joined by '-'")
	errMACCase    = notNode("MAC is not lower case")
	errMACParse   = notNode("MAC does not parse")
	errStatEmpty  = badName("empty")
	errStatLong   = badName("longer than " + strconv.Itoa(MaxNameLen) + " bytes")
	errStatDot    = badName(`"." or ".."`)
	errStatSlash  = badName("contains '/'")
	errStatNUL    = badName("contains NUL")
	errStatCtrl   = badName("contains a control character")
	errStatNonASC = badName("contains a non-ASCII byte")
)

const (
	hexIPLen  = 8
	macPrefix = "01-"
	macLen    = len(macPrefix) + 6*2 + 5 // "01-aa-bb-cc-dd-ee-ff"
)

// Parse decides whether name is a node name and returns it parsed. Its
// errors wrap ErrNotNode with a short reason.
func Parse(name string) (Name, error) {
	switch {
	case name == "":
		return Name{}, errEmpty
	case len(name) > MaxNameLen:
		return Name{}, errTooLong
	case len(name) == hexIPLen:
		id, err := node.ParseHex(name)
		if err != nil {
			return Name{}, errNotHex8
		}
		return Name{Kind: KindIP, ID: id}, nil
	case isHWTypePrefix(name):
		if name[:len(macPrefix)] != macPrefix {
			return Name{}, errHWType
		}
		mac, err := parseMACName(name)
		if err != nil {
			return Name{}, err
		}
		return Name{Kind: KindMAC, MAC: mac}, nil
	}
	return Name{}, errNotForm
}

// isHWTypePrefix reports whether name starts like pxelinux's
// "<ARP type>-" form, so that "02-..." gets a reason naming the type.
func isHWTypePrefix(name string) bool {
	return len(name) >= 3 && isHex(name[0]) && isHex(name[1]) && name[2] == '-'
}

// parseMACName checks the exact form pxelinux sends before handing the
// address to net.ParseMAC, which on its own would also accept upper case,
// ':' and '.' separators and 8- or 20-byte addresses.
func parseMACName(name string) (net.HardwareAddr, error) {
	if len(name) != macLen {
		return nil, errMACPairs
	}
	upper := false
	for i := len(macPrefix); i < len(name); i++ {
		c := name[i]
		if (i-len(macPrefix))%3 == 2 {
			if c != '-' {
				return nil, errMACPairs
			}
			continue
		}
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case 'A' <= c && c <= 'F':
			upper = true
		default:
			return nil, errMACPairs
		}
	}
	if upper {
		return nil, errMACCase
	}
	mac, err := net.ParseMAC(name[len(macPrefix):])
	if err != nil || len(mac) != 6 {
		// Unreachable after the checks above; kept so a change in
		// net.ParseMAC cannot let a malformed name through.
		return nil, errMACParse
	}
	return mac, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// MACName gives the pxelinux file name for an Ethernet MAC,
// "01-aa-bb-cc-dd-ee-ff", or "" unless mac has 6 bytes (pxelinux uses other
// ARP types for other lengths, and we serve only Ethernet).
func MACName(mac net.HardwareAddr) string {
	if len(mac) != 6 {
		return ""
	}
	const digits = "0123456789abcdef"
	var b [macLen]byte
	copy(b[:], macPrefix)
	for i, v := range mac {
		o := len(macPrefix) + 3*i
		b[o] = digits[v>>4]
		b[o+1] = digits[v&0xf]
		if i < 5 {
			b[o+2] = '-'
		}
	}
	return string(b[:])
}

// ColonMAC gives mac as "aa:bb:cc:dd:ee:ff", or "" unless it has 6 bytes,
// matching MACName.
func ColonMAC(mac net.HardwareAddr) string {
	if len(mac) != 6 {
		return ""
	}
	return mac.String()
}

// CheckStatic reports whether name may be looked up as a static file beside
// the node names (e.g. "default"). TFTP names are ASCII, so only printable
// ASCII is accepted; that also rules out names that would mean something
// else to the filesystem below. Errors wrap ErrBadName.
func CheckStatic(name string) error {
	switch {
	case name == "":
		return errStatEmpty
	case len(name) > MaxNameLen:
		return errStatLong
	case name == "." || name == "..":
		return errStatDot
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == 0:
			return errStatNUL
		case c == '/':
			return errStatSlash
		case c < 0x20 || c == 0x7f:
			return errStatCtrl
		case c > 0x7f:
			return errStatNonASC
		}
	}
	return nil
}
