// Package fs is the FUSE filesystem mounted over a boot loader's directory
// (pxelinux.cfg, GRUB's prefix). It is a thin, read-only edge: every name
// is resolved and rendered by a Source (a catalog), inode numbers are
// chosen here, and errors become errnos here and only here, through
// toErrno.
//
// # Versions
//
// What a name holds is served the way a plain filesystem serves a file an
// admin replaces by rename: each version is its own inode, whose size and
// bytes never change. A LOOKUP renders the name without side effects and
// answers with the inode of that content (the same inode as long as the
// content is the same: versionIno hashes name and content). An OPEN does
// what opening costs (a node's root is made on its first boot) and renders
// again; if that is the inode's version it is served, else the open fails
// with ESTALE and the kernel, within the same open(2), looks the name up
// again and opens the new version's inode (see file.Open for the one case
// where the version the open's own path walk found is served instead). So
// a tftpd's fstat (its tsize) and its reads always describe one render,
// whatever changes meanwhile, and an open descriptor keeps its version.
//
// # Caching
//
// A version's attributes and pages never change, so the kernel keeps them
// (StableTimeout, FOPEN_KEEP_CACHE). What can go stale is only which inode
// a name leads to:
//
//   - a name whose content changes only with an announced change
//     (catalog.Content.Stable: a registered node, or any node in
//     config-only mode) is cached by the kernel for StableTimeout, so a
//     warm node's fetch costs one OPEN (which records the boot) and
//     nothing else; every announced change (a reload of the template,
//     ethers, inventory or config, an install state) makes the catalog's
//     OnChange callback drop every name the kernel knows (NotifyEntry),
//     after the new content is served;
//   - every other name (static files, which admins edit in place;
//     generated content; a node not yet registered) is cached 1 s, and
//     unknown names 1 s too (pxelinux's walk through UUID, MAC and hex
//     prefixes costs one LOOKUP per name per second);
//   - a change the kernel was not told of in time is caught by the OPEN,
//     which compares versions.
//
// The mount's root and by-ip/ never change, so their attributes are cached
// for StableTimeout too: with default_permissions the kernel checks the
// root's mode on every path walk into the mount, and a zero timeout there
// cost every fetch a GETATTR round trip (TestWarmFetchIsOneOpen).
package fs
