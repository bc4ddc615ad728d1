// Package registry is the persistent record of nodes: who they are, the NFS
// fsid each was given (allocated once, kept forever), their boot history and
// their install state, stored under pxebootfs's state_dir. A node put in
// install mode before it ever got a root (always so in config-only mode) has
// a record with fsid 0 until it first needs one.
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
// The state lives in state_dir/nodes.json, a snapshot, and
// state_dir/nodes.journal, the changes made since (see journal.go):
//
//	nodes.json     {"version": 1, "seq": S, "nodes": [...], "retired_fsids": [...]}
//	nodes.journal  {"base": S} then one line per change: {"seq": N, "put": {...}} or {"seq": N, "forget": ...}
//
// A change appends one line to the journal, so its cost does not grow with
// the number of nodes. The journal is compacted into a new snapshot when it
// grows to four times the snapshot (and at least 1 MiB), at Open and at
// Close, so after a clean shutdown nodes.json holds everything and the
// journal is empty. Both files are replaced atomically (temp file, fsync,
// rename, fsync of the directory), and replay skips journal lines a newer
// snapshot already holds, so a crash at any instant leaves the old or the
// new state; a last journal line a crash cut short was never acknowledged
// and is ignored. A nodes.json of a version without the journal is read as
// it is and migrated at Open. A file that does not parse or breaks an
// invariant (duplicate node or fsid, bad node name, retired fsid 0) is an error:
// the registry never starts over silently, since that would hand out fsids
// again.
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
// Every mutating method but [Registry.RecordBoot] returns only once the
// change is on disk (its journal line appended and fsynced): a node, its
// fsid, a release, an error. Writes are coalesced: a caller whose change is
// not yet written either becomes the writer (if no write is in flight) or
// waits for the write in flight and then checks again; a writer always
// writes the newest state. A storm of a thousand new nodes thus costs a
// handful of fsyncs rather than a thousand.
//
// A node's first boot is durable like the rest (restore brings back the
// nodes that booted). A later boot record (count, last boot, MAC) is
// written within bootFlushDelay
// (1 s) by a timer, or sooner with the next durable change: every open of a
// node's config records a boot, and an fsync per open made a warm boot
// storm disk-bound. A crash loses at most the last second of boot counts.
//
// All methods are safe for concurrent use.
package registry
