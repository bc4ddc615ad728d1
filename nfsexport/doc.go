// Package nfsexport exports a node's root directory over NFS to that node's
// IPv4 address alone, with a given fsid, and finds the fsids that exports
// already on the server use.
//
// # Backends
//
// [Exporter] is the one interface; [Exportfs] drives the kernel NFS server
// through nfs-utils' exportfs(8), [Ganesha] drives NFS-Ganesha through its
// D-Bus export manager, and [None] exports nothing (for setups where the
// roots are served some other way). The tests run one table of behaviour
// cases against both real servers.
//
// # Safety
//
// An export always names a single IPv4 client, never a wildcard, network or
// hostname, and an absolute, clean path made only of characters that
// exportfs, etab and exports(5) files carry unchanged. Commands are run
// argument by argument, never through a shell.
//
// # Persistence
//
// exportfs records command-line exports only in /var/lib/nfs/etab, and
// `exportfs -ra` (which an nfs-server restart runs) drops every export that
// is not also in /etc/exports or /etc/exports.d. [ExportfsOptions.ExportsFile]
// names a file of ours in /etc/exports.d in which every export is recorded
// too, so that exports survive such a restart.
//
// Ganesha's exports live in a managed include file of ours
// ([GaneshaOptions.ConfigFile]), one EXPORT block per node, which Ganesha's
// main configuration %includes: it is the source of truth Ganesha reads at
// start. Changes are written there first (atomically), then applied to the
// running server over D-Bus (AddExport, UpdateExport, RemoveExport), so
// Ganesha is never restarted or reloaded, and other exports are not touched.
// A Ganesha export's fsid is its Export_Id, which is 16 bits.
//
// # Concurrency
//
// All methods are safe for concurrent use: exportfs locks etab itself,
// Ganesha serializes D-Bus calls, and updates of the exports file and of the
// managed file are serialized in the process. Calls for the
// same (path, client) pair must not race each other; callers serialize per
// node.
package nfsexport
