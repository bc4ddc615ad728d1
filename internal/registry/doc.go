// Package registry is the persistent record of provisioned nodes: who they
// are, the NFS fsid each was given (allocated once, kept forever) and their
// boot history, stored under pxebootfs's state_dir.
//
// # Identity
//
// A node is named by its IPv4 address as eight upper-case hex digits
// ("C0A80102" for 192.168.1.2), the name pxelinux asks for. An fsid is
// allocated the first time a node is seen and never changes while the node is
// known. When a node is forgotten its fsid is retired, not freed: an NFS
// client that still holds file handles from the old export must never reach a
// different node's root through a reused fsid.
//
// # File format
//
// The state lives in one JSON file, state_dir/nodes.json:
//
//	{"version": 1, "nodes": [...], "retired_fsids": [...]}
//
// It is replaced atomically (temp file in the same directory, fsync, rename,
// fsync of the directory), so a crash at any instant leaves either the old or
// the new state. Leftover temp files of a crashed writer are ignored when
// reading and removed by [Open]. A file that does not parse or breaks an
// invariant (duplicate node or fsid, bad node name, fsid 0) is an error: the
// registry never starts over silently, since that would hand out fsids again.
//
// # Locking
//
// [Open] holds an exclusive flock on state_dir/lock for the life of the
// [Registry], so two daemons cannot allocate from one state_dir. The lock
// file holds the owner's pid, for the error message the loser gets. Admin
// commands read the state without the lock through [OpenReadOnly].
//
// # Durability and group commit
//
// Every mutating method returns only once the change is on disk. Writes are
// coalesced: a caller whose change is not yet written either becomes the
// writer (if no write is in flight) or waits for the write in flight and then
// checks again; a writer always writes the newest state. A boot storm of a
// thousand concurrent [Registry.RecordBoot] calls thus costs a handful of
// fsyncs rather than a thousand, without a background goroutine.
//
// All methods are safe for concurrent use.
package registry
