package node

import (
	"context"
	"errors"
	"net/netip"
)

// ID is a node's identity: a unicast-or-not IPv4 address (policy on which
// addresses are served lives elsewhere). The zero ID is not a node.
type ID struct {
	addr netip.Addr
}

// ErrInvalid is wrapped by every parse error, so callers can tell a bad
// name from other failures.
var ErrInvalid = errors.New("not a node")

// parseError carries a fixed reason. The parsers run on every name a tftpd
// looks up, most of which are not nodes, so rejecting one must not allocate:
// the errors are built once, and the rejected text is left for the caller to
// quote (it is client-controlled).
type parseError struct{ msg string }

func (e *parseError) Error() string { return e.msg }
func (e *parseError) Unwrap() error { return ErrInvalid }

var (
	errHex     = &parseError{ErrInvalid.Error() + ": not 8 hex digits"}
	errNotIPv4 = &parseError{ErrInvalid.Error() + ": not an IPv4 address"}
	errArg     = &parseError{ErrInvalid.Error() + ": want its hex name (8 hex digits, e.g. C0A80102) or its IPv4 address (e.g. 192.168.1.2)"}
	errCase    = &parseError{ErrInvalid.Error() + ": stored node names are upper-case hex"}
)

// HexLen is the length of a node's hex name.
const HexLen = 8

// FromAddr returns the node with address a. IPv4-mapped IPv6 addresses are
// refused rather than unmapped: a caller must decide that deliberately.
func FromAddr(a netip.Addr) (ID, error) {
	if !a.Is4() {
		return ID{}, errNotIPv4
	}
	return ID{addr: a}, nil
}

// FromUint32 returns the node whose address is v in network byte order
// (0xC0A80102 is 192.168.1.2).
func FromUint32(v uint32) ID {
	return ID{addr: netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})}
}

// ParseHex parses exactly 8 hex digits, either case, as pxelinux's name for
// a node. It is the parser for names that come from TFTP clients.
func ParseHex(s string) (ID, error) {
	if len(s) != HexLen {
		return ID{}, errHex
	}
	var v uint32
	for i := 0; i < len(s); i++ {
		d, ok := hexDigit(s[i])
		if !ok {
			return ID{}, errHex
		}
		v = v<<4 | uint32(d)
	}
	return FromUint32(v), nil
}

// Parse parses an admin's name for a node: its hex name in either case, or
// its dotted IPv4 address.
func Parse(s string) (ID, error) {
	if id, err := ParseHex(s); err == nil {
		return id, nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return ID{addr: a}, nil
	}
	return ID{}, errArg
}

// MustParse is Parse for constants in tests and examples; it panics on error.
func MustParse(s string) ID {
	id, err := Parse(s)
	if err != nil {
		panic("node.MustParse(" + s + "): " + err.Error())
	}
	return id
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// IsValid reports whether id is a node (not the zero ID).
func (id ID) IsValid() bool { return id.addr.IsValid() }

// Addr is the node's IPv4 address; the zero netip.Addr for the zero ID.
func (id ID) Addr() netip.Addr { return id.addr }

// Uint32 is the address in network byte order; 0 for the zero ID.
func (id ID) Uint32() uint32 {
	if !id.IsValid() {
		return 0
	}
	b := id.addr.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// String is the hex name pxelinux asks for ("C0A80102"), "" for the zero ID.
// It is also a safe path component: 8 characters from [0-9A-F].
func (id ID) String() string {
	if !id.IsValid() {
		return ""
	}
	var b [HexLen]byte
	id.appendHex(b[:0])
	return string(b[:])
}

func (id ID) appendHex(b []byte) []byte {
	const digits = "0123456789ABCDEF"
	for _, v := range id.addr.As4() {
		b = append(b, digits[v>>4], digits[v&0xf])
	}
	return b
}

// Compare orders IDs by address; the zero ID sorts first.
func (id ID) Compare(o ID) int { return id.addr.Compare(o.addr) }

// MarshalText stores the hex name. The zero ID marshals as "".
func (id ID) MarshalText() ([]byte, error) {
	if !id.IsValid() {
		return []byte{}, nil
	}
	return id.appendHex(make([]byte, 0, HexLen)), nil
}

// UnmarshalText reads what MarshalText wrote. Only the canonical upper-case
// form is accepted, so one node cannot be stored twice under two spellings.
func (id *ID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*id = ID{}
		return nil
	}
	v, err := ParseHex(string(b))
	if err != nil {
		return err
	}
	for _, c := range b {
		if 'a' <= c && c <= 'f' {
			return errCase
		}
	}
	*id = v
	return nil
}

// Node is a node as the filesystem knows it when it asks for a root.
type Node struct {
	ID  ID
	MAC string // colon form, lower case; "" if unknown
}

// Root is what provisioning tells the template about a node's root.
type Root struct {
	FSID uint32
	Dir  string // exported path, node_dir/NODE
	// RootName and RootGen are the root generation the node's layer is
	// made over (package roots): "root_dir" and "dir" for the config's
	// root_dir. For a node not yet made, the one it would get.
	RootName string
	RootGen  string
	// Kernel and Initrd are that generation's boot image files, relative
	// to tftp_root; "" when it has none.
	Kernel string
	Initrd string
	// Server is the address of the server holding the root, for nodes to
	// mount it from (server_address; in cluster mode, the owner's). Owner
	// is that server's name in the cluster; Remote is true when it is not
	// this server, which then holds nothing of the node.
	Server string
	Owner  string
	Remote bool
	// Known: the node is registered, so FSID is its own for good. Peek
	// of a new node gives the next free fsid, which a concurrent new
	// node may take first; a config rendered from it may still change.
	Known bool
}

// Provisioner prepares nodes' roots; the filesystem calls it. Prepare runs
// on open (a tftpd about to send the config) and blocks until the root is
// mounted and exported; Booted runs when the config rendered from it is
// served; Peek must have no side effects, as stat and `pxebootfs render`
// use it.
type Provisioner interface {
	Prepare(ctx context.Context, n Node) (Root, error)
	Booted(n Node)
	Peek(id ID) Root
	Nodes() []Node
}
