#!/usr/bin/env bash
# Demo of pxebootfs's main job on a fresh Debian machine (run as root):
# installs what it needs, builds pxebootfs, mounts it over the pxelinux.cfg
# directory of a demo TFTP root in a temporary directory, starts a real
# tftpd-hpa on 127.0.0.1 serving that root, fetches a node's config with a
# real TFTP client and shows it. Everything is stopped and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if [ "$(id -u)" != 0 ]; then
	echo "demo.sh: run as root (FUSE mount with allow_other, tftpd)" >&2
	exit 2
fi
scripts/setup.sh
[ -x /usr/local/go/bin/go ] && export PATH=/usr/local/go/bin:$PATH
go build -o "$repo/bin/pxebootfs" ./cmd/pxebootfs
pxebootfs=$repo/bin/pxebootfs

demo=$(mktemp -d /tmp/pxebootfs-demo.XXXXXX)
chmod 0755 "$demo" # tftpd runs as user tftp and must traverse it
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	umount -l "$demo/tftpboot/pxelinux.cfg" 2>/dev/null || true
	rm -rf "$demo"
}
trap cleanup EXIT

mkdir -p "$demo/tftpboot/pxelinux.cfg" "$demo/etc/static"
cp pxelinux.cfg.template "$demo/etc/"
printf 'DEFAULT local\nLABEL local\n  LOCALBOOT 0\n' >"$demo/etc/static/default"
printf '# MAC               IP\n52:54:00:12:34:56  192.168.1.2\n' >"$demo/etc/ethers"
cat >"$demo/etc/pxebootfs.cfg" <<CFG
[PXEBOOTFS]
pxe_template: pxelinux.cfg.template
static_dir = static
ethers = ethers
allow = 192.168.0.0/16
state_dir = $demo/state
CFG

echo "== pxebootfs check"
"$pxebootfs" check -c "$demo/etc/pxebootfs.cfg"
"$pxebootfs" check -c "$repo/pxebootfs.cfg.example"

echo "== mounting pxebootfs over $demo/tftpboot/pxelinux.cfg"
"$pxebootfs" mount -c "$demo/etc/pxebootfs.cfg" "$demo/tftpboot/pxelinux.cfg" 2>"$demo/pxebootfs.log" &
pids+=($!)
for _ in $(seq 100); do
	mountpoint -q "$demo/tftpboot/pxelinux.cfg" && break
	sleep 0.1
done
mountpoint -q "$demo/tftpboot/pxelinux.cfg" || { cat "$demo/pxebootfs.log"; exit 1; }
ls -l "$demo/tftpboot/pxelinux.cfg"

port=$((20000 + RANDOM % 20000))
echo "== starting tftpd-hpa on 127.0.0.1:$port"
in.tftpd -L -a "127.0.0.1:$port" -s -u tftp "$demo/tftpboot" &
pids+=($!)
sleep 0.5

fetch() {
	rm -f "$demo/fetched"
	(cd "$demo" && tftp -m binary 127.0.0.1 "$port" -c get "pxelinux.cfg/$1" fetched)
	[ -s "$demo/fetched" ] || { echo "fetch of $1 failed" >&2; return 1; }
}
for name in b8945908-d6a6-41a9-611d-74a6ab80b83d 01-52-54-00-12-34-56 C0A80102; do
	echo "== tftp get pxelinux.cfg/$name"
	if fetch "$name"; then
		cat "$demo/fetched"
		echo "== ($(stat -c %s "$demo/fetched") bytes; pxebootfs render gives the same: $(
			"$pxebootfs" render -c "$demo/etc/pxebootfs.cfg" "$name" | cmp -s - "$demo/fetched" && echo yes || echo NO))"
	else
		echo "   (not served: pxelinux falls through to the next name, as it should for a UUID)"
	fi
done
echo "== pxebootfs log"
cat "$demo/pxebootfs.log"
