// Package fs is the FUSE filesystem mounted over a tftpd's pxelinux.cfg
// directory. It is a thin, read-only edge: every name is resolved, sized and
// rendered by a Source (the catalog), and errors become errnos here and only
// here, through toErrno.
//
// # Caching
//
// Entries are cached by the kernel for EntryTimeout (1 s) and unknown names
// for NegativeTimeout (1 s), so pxelinux's walk through UUID, MAC and hex
// prefixes costs one LOOKUP per name per second. Attributes are never cached
// (AttrTimeout 0): every stat and fstat asks us, and we render, so the size a
// tftpd announces as tsize is exactly what its reads return, even right
// after the template changed. Page-cache content is dropped on every open
// (no FOPEN_KEEP_CACHE), so a new open never sees an old render.
//
// # Inodes
//
// Inode numbers come from the name's identity (IPv4, MAC, or a hash of a
// static name, with a kind tag), so concurrent lookups of one name merge and
// a re-lookup after expiry finds the same inode. Nothing is hung on the Go
// node objects but their name: the kernel may hand back an existing one.
package fs
