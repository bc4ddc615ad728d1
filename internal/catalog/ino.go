package catalog

import (
	"hash/fnv"
	"net"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// Inode tags keep the inode spaces of different kinds disjoint; the low bits
// carry the identity (IPv4, MAC, name hash) so a name always gets the same
// inode number and concurrent lookups of one name merge in the kernel.
const (
	tagIP     = uint64(1) << 56
	tagMAC    = uint64(2) << 56
	tagStatic = uint64(3) << 56
	tagLink   = uint64(4) << 56
	tagGen    = uint64(5) << 56
	lowMask   = uint64(1)<<56 - 1
)

// nodeIno is the inode number of a hex-IP name of id as spelled in name.
func nodeIno(name string, id node.ID) uint64 {
	return tagIP | caseBits(name)<<32 | uint64(id.Uint32())
}

// LinkIno is the inode number of a node's by-ip symlink.
func LinkIno(id node.ID) uint64 { return tagLink | uint64(id.Uint32()) }

// caseBits records which hex digits of a hex-IP name are lower-case. The
// kernel keys inodes by number, and the template sees .Name: C0A80102 and
// c0a80102 must be distinct inodes, or one would be served the other's name.
func caseBits(name string) uint64 {
	var v uint64
	for i := 0; i < len(name); i++ {
		if name[i] >= 'a' && name[i] <= 'f' {
			v |= 1 << i
		}
	}
	return v
}

func macBits(m net.HardwareAddr) uint64 {
	var v uint64
	for _, b := range m {
		v = v<<8 | uint64(b)
	}
	return v & lowMask
}

func hashName(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64() & lowMask
}
