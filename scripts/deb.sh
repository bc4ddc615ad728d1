#!/usr/bin/env bash
# Builds a Debian package of pxebootfs with dpkg-deb (Debian's own packager;
# nothing to install): the binary, the systemd unit, the config and the
# pxelinux template as conffiles under /etc/pxebootfs (an admin's edits
# survive upgrades), the examples under /usr/share/doc/pxebootfs.
#
#   scripts/deb.sh [OUTDIR]        (BIN=path reuses a built binary)
#
# Prints the path of the .deb it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath "${1:-.}")

# Debian versions must start with a digit: a tag v1.2.3 gives 1.2.3, an
# untagged tree 0~git<date>.<commit>.
if tag=$(git describe --tags --exact-match 2>/dev/null); then
	version=${tag#v}
else
	version="0~git$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date +%Y%m%d).$(git rev-parse --short HEAD 2>/dev/null || echo local)"
fi
arch=$(dpkg --print-architecture)
bin=${BIN:-}
if [ -z "$bin" ]; then
	make -s build VERSION="$version" >&2
	bin=bin/pxebootfs
fi

stage=$(mktemp -d)
chmod 0755 "$stage" # becomes / in the package
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$bin" "$stage/usr/sbin/pxebootfs"
install -d -m 0755 "$stage/lib/systemd/system"
sed 's|/usr/local/sbin/pxebootfs|/usr/sbin/pxebootfs|; s|Installed by `make install` as /etc/systemd/system/pxebootfs.service.|Installed by the pxebootfs package.|' \
	contrib/pxebootfs.service >"$stage/lib/systemd/system/pxebootfs.service"
chmod 0644 "$stage/lib/systemd/system/pxebootfs.service"
install -D -m 0644 pxebootfs.cfg.example "$stage/etc/pxebootfs/pxebootfs.cfg"
install -D -m 0644 pxelinux.cfg.template "$stage/etc/pxebootfs/pxelinux.cfg.template"
install -D -m 0644 grub.cfg.template "$stage/etc/pxebootfs/grub.cfg.template"
doc="$stage/usr/share/doc/pxebootfs"
install -D -m 0644 README.md "$doc/README.md"
for f in pxebootfs.cfg.example pxelinux.cfg.template grub.cfg.template testdata/nodes.ini; do
	install -D -m 0644 "$f" "$doc/examples/$(basename "$f")"
done
printf 'pxebootfs\nSee README.md; the sources are at the project'"'"'s repository.\n' >"$doc/copyright"

install -d -m 0755 "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: pxebootfs
Version: $version
Architecture: $arch
Maintainer: pxebootfs developers <pxebootfs@localhost>
Installed-Size: $size
Depends: fuse3, nfs-kernel-server | nfs-ganesha
Recommends: tftpd-hpa | atftpd
Section: net
Priority: optional
Homepage: https://github.com/pxebootfs/pxebootfs
Description: per-node pxelinux and GRUB configs and NFS roots over FUSE
 pxebootfs is mounted over a tftpd's pxelinux.cfg (and GRUB's) directory
 and renders each node's boot config from a template when the node asks;
 in full mode it gives every node a copy-on-write overlay of one golden
 root, exported over NFS to that node alone with a stable fsid.
CONTROL
printf '/etc/pxebootfs/pxebootfs.cfg\n/etc/pxebootfs/pxelinux.cfg.template\n/etc/pxebootfs/grub.cfg.template\n' >"$stage/DEBIAN/conffiles"
# systemd learns of the unit; nothing is enabled or started: the example
# config serves nothing until the admin edits it.
cat >"$stage/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
SCRIPT
cat >"$stage/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
# Node records in /var/lib/pxebootfs are never deleted by the package: only
# `pxebootfs release -purge` deletes a node's data. An empty one goes.
if [ "$1" = purge ]; then rmdir /var/lib/pxebootfs 2>/dev/null || true; fi
SCRIPT
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"

deb="$out/pxebootfs_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
