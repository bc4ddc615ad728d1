// Package fs is the FUSE filesystem mounted over a tftpd's pxelinux.cfg
// directory. It is a thin, read-only edge: every name is resolved, sized and
// rendered by a Source (the catalog), and errors become errnos here and only
// here, through toErrno.
//
// # Caching
//
// A node's config whose content changes only with an announced change
// (catalog.Stat.Stable: a registered node, or any node in config-only mode)
// is cached by the kernel for StableTimeout: entry, attributes and page
// cache, so a warm node's fetch costs one OPEN (which records the boot)
// and nothing else. Every change is invalidated explicitly:
//
//   - a reload of the template, ethers, inventory or config: the catalog's
//     OnChange callback notifies the kernel (NotifyContent, NotifyEntry)
//     for every name it knows, after the new content is served;
//   - a change only an open can see (a node registered with another fsid):
//     Open compares the size it is about to serve with the size the kernel
//     caches and, if they differ, invalidates the attributes before it
//     replies, so the tftpd's fstat after its open announces the size this
//     open reads (tsize stays exact). Whether the kernel applied a size
//     we sent cannot be known (it drops replies that race with a newer
//     change), so any change of content since the last open invalidates
//     too;
//   - an open that straddled a change keeps reading its older content,
//     and the kernel puts those pages in the page cache and takes an early
//     end of them as the file's size: after any such read the next open
//     invalidates and drops the page cache;
//   - otherwise the page cache is kept when an open's content equals the
//     last open's (FOPEN_KEEP_CACHE).
//
// The mount's root and by-ip/ never change, so their attributes are cached
// for StableTimeout too: with default_permissions the kernel checks the
// root's mode on every path walk into the mount, and a zero timeout there
// cost every fetch a GETATTR round trip (TestWarmFetchIsOneOpen).
//
// Everything else (static files, which admins edit in place; generated
// content; a node not yet registered, whose fsid is not yet its own) keeps
// the old rules: entries and unknown names cached 1 s (pxelinux's walk
// through UUID, MAC and hex prefixes costs one LOOKUP per name per second),
// attributes never, page cache dropped on every open.
//
// # Inodes
//
// Inode numbers come from the name's identity (IPv4, MAC, or a hash of a
// static name, with a kind tag), so concurrent lookups of one name merge and
// a re-lookup after expiry finds the same inode. The Go node objects carry
// their name and what the kernel was last told (a cached size, the content
// of the last open); a lookup may get back an existing one, so it updates
// the one it gets.
package fs
