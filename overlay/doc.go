// Package overlay mounts, adopts and unmounts per-node copy-on-write
// overlays of one read-only golden root. That is its one job: it knows
// nothing of NFS exports, configuration files or FUSE.
//
// # Layout
//
// For a node NODE (eight upper-case hex digits, the node's IPv4 address) a
// Manager uses
//
//	NodeDir/NODE            mount point, exported to the node
//	OverlayDir/NODE/upper   the node's private changes
//	OverlayDir/NODE/work    overlayfs's scratch space (same filesystem as upper)
//	RootDir                 the shared read-only lower layer
//
// # NFS export
//
// overlayfs mounts are made with index=on,nfs_export=on from the very first
// mount: an overlay mounted without them cannot hand out NFS file handles,
// and with index=on the upper directory is bound to its lower directory, so
// the options cannot be added later. Remounting an upper over a different
// lower fails (ESTALE).
//
// # Adoption
//
// Node roots outlive the daemon: running nodes keep their roots across a
// restart. Mount therefore reads the mount table first and adopts an overlay
// that is already mounted at the node's mount point instead of stacking a
// second one on top of it. Nothing in this package ever deletes a node's
// data on its own; Wipe and Remove run only when the caller asks.
//
// # Concurrency
//
// A Manager is safe for concurrent use. Operations on one node are
// serialised; different nodes proceed in parallel. Other processes changing
// the same mounts are not guarded against.
package overlay
