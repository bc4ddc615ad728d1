package fs

import (
	"hash/fnv"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// Inode numbers are the filesystem's business, not the catalog's. Tags in
// the top byte keep the spaces apart; the small numbers of our own
// directories (rootIno, byIPIno) are below every tag.
const (
	tagFile = uint64(1) << 56 // one version of a served file
	tagName = uint64(2) << 56 // a name in a listing (readdir's d_ino)
	tagLink = uint64(4) << 56 // a node's by-ip symlink
	lowMask = uint64(1)<<56 - 1
)

// versionIno is the inode number of one version of a served name: a hash
// of the name and the content. A lookup that finds the same content gets
// the same inode (concurrent lookups merge, a re-lookup after expiry finds
// the one the kernel has); other content is another inode, as a file
// replaced by rename is, so an open descriptor keeps the version it
// opened. C0A80102 and c0a80102 (the template sees .Name), or GRUB's hex
// and dotted names of one node, are different names and so different
// inodes.
func versionIno(name string, data []byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(data)
	return tagFile | h.Sum64()&lowMask
}

// nameIno is the inode number a listing shows for a name; a listing renders
// nothing, so it cannot know the version a lookup will find.
func nameIno(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return tagName | h.Sum64()&lowMask
}

// linkIno is the inode number of a node's by-ip symlink.
func linkIno(id node.ID) uint64 { return tagLink | uint64(id.Uint32()) }
