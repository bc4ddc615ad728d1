#!/usr/bin/env bash
# Demo of pxebootfs on a fresh Debian machine (run as root); installs what it
# needs first (scripts/setup.sh).
#
#   scripts/demo.sh          the main job: two diskless machines boot under
#                            QEMU (BIOS iPXE -> pxelinux -> a Debian kernel)
#                            with their roots over NFS from pxebootfs's
#                            per-node overlays, write into them and power
#                            off; one reboots and is reset. It is the suite's
#                            TestDisklessBoot, narrated: everything runs in a
#                            network namespace it makes (dnsmasq, tftpd-hpa,
#                            NFS-Ganesha) and is removed at the end.
#   scripts/demo.sh --quick  config-only mode: a real tftpd-hpa on 127.0.0.1
#                            serves a node's rendered config through the mount.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if [ "$(id -u)" != 0 ]; then
	echo "demo.sh: run as root (FUSE mount with allow_other, tftpd, network namespaces)" >&2
	exit 2
fi
mode=full
case "${1:-}" in
--quick) mode=quick ;;
"") ;;
*)
	echo "usage: scripts/demo.sh [--quick]" >&2
	exit 2
	;;
esac
scripts/setup.sh
[ -x /usr/local/go/bin/go ] && export PATH=/usr/local/go/bin:$PATH

if [ "$mode" = full ]; then
	start=$SECONDS
	echo "== building pxebootfs and the end-to-end test binary"
	bin=$(mktemp -d /tmp/pxebootfs-demo.XXXXXX)
	trap 'rm -rf "$bin"' EXIT
	go test -c -o "$bin/e2e.test" ./internal/e2e
	echo "== running the diskless boot (the first run also builds the guest's initrd)"
	# The test's narration is its log (-v); the filter keeps the steps, the
	# guests' console lines and the command output, nothing of the harness.
	set +e
	(cd internal/e2e && PXEBOOTFS_TEST_DISALLOW_SKIP=1 "$bin/e2e.test" -test.run '^TestDisklessBoot$' -test.v -test.timeout 20m 2>&1) |
		tee "$bin/log" | sed -u -n -e 's/^    diskless_test\.go:[0-9]*: //p' -e 's/^        //p' -e 's/^--- \(PASS\|FAIL\|SKIP\)/--- \1/p'
	rc=${PIPESTATUS[0]}
	set -e
	if [ "$rc" != 0 ]; then
		echo "demo.sh: the diskless boot failed (exit $rc); full log:" >&2
		cat "$bin/log" >&2
		exit 1
	fi
	echo "== demo done in $((SECONDS - start)) s"
	grep -o 'node [0-9A-F]* booted diskless; .*' "$bin/log" | tail -1
	exit 0
fi

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
