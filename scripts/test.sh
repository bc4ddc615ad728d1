#!/usr/bin/env bash
# Runs pxebootfs's whole test suite as root on a fresh Debian machine:
# installs what it needs, checks formatting and vet, runs every test with
# the race detector (root-only tests may not skip), runs each fuzz target
# briefly, and fails if the tests left a mount or an export behind.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "test.sh: run as root (real FUSE, overlayfs, exportfs and tftpd tests)" >&2
	exit 2
fi
scripts/setup.sh
[ -x /usr/local/go/bin/go ] && export PATH=/usr/local/go/bin:$PATH
export PXEBOOTFS_TEST_DISALLOW_SKIP=1

mounts_before=$(grep -cE ' (fuse\.pxebootfs|overlay) ' /proc/self/mounts || true)
etab_before=$(md5sum /var/lib/nfs/etab 2>/dev/null || true)

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed on: $unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 30m ./...

# Fuzz targets, briefly, so they stay green.
scripts/fuzz.sh

mounts_after=$(grep -cE ' (fuse\.pxebootfs|overlay) ' /proc/self/mounts || true)
if [ "$mounts_after" != "$mounts_before" ]; then
	echo "tests left mounts behind:" >&2
	grep -E ' (fuse\.pxebootfs|overlay) ' /proc/self/mounts >&2
	exit 1
fi
if [ "$(md5sum /var/lib/nfs/etab 2>/dev/null || true)" != "$etab_before" ]; then
	echo "tests changed the real /var/lib/nfs/etab:" >&2
	exportfs -v >&2 || true
	exit 1
fi
echo "test.sh: all tests passed, nothing left mounted or exported"
