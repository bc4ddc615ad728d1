#!/usr/bin/env bash
# Installs everything pxebootfs's demo, tests and benchmarks need on a fresh
# Debian machine (run as root), and downloads the Go modules. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
	fuse3          # /dev/fuse helpers (fusermount3)
	tftpd-hpa      # the stock tftpd the tests serve through
	tftp-hpa curl  # real TFTP clients
	nfs-kernel-server # exportfs
	nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils dbus # userspace NFS end to end
	iproute2 util-linux procps psmisc kmod
	systemd        # systemd-analyze verify of contrib/pxebootfs.service
	make git ca-certificates
	qemu-system-x86 ovmf grub-efi-amd64-bin # real UEFI firmware booting GRUB from the mount
	ipxe-qemu pxelinux syslinux-common      # real BIOS PXE: iPXE ROM, pxelinux
	busybox-static dnsmasq-base cpio        # the diskless guest: its initrd and root, DHCP
	nginx                                   # iPXE over HTTP: a stock web server reads the mount
	shim-signed grub-efi-amd64-signed       # UEFI Secure Boot: Debian's signed shim and network GRUB
	qemu-system-arm qemu-efi-aarch64        # arm64 UEFI nodes: QEMU and AAVMF
	etcd-server etcd-client                 # cluster mode: several servers share state in etcd
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "setup: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# policy-rc.d on build hosts may refuse to start services: that is fine,
	# the tests start what they need themselves.
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go: the machine image has it in /usr/local/go; otherwise Debian's go
# fetches the toolchain go.mod asks for through the module proxy.
if ! command -v go >/dev/null; then
	if [ -x /usr/local/go/bin/go ]; then
		export PATH=/usr/local/go/bin:$PATH
	else
		apt-get install -y -qq --no-install-recommends golang-go >/dev/null
	fi
fi
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
go mod download
# A Debian kernel for the diskless guest of the demo and the tests:
# downloaded, unpacked by them, never installed as this machine's kernel.
guest_cache=/var/cache/pxebootfs-guest
if ! ls "$guest_cache"/linux-image-*-amd64_*.deb >/dev/null 2>&1; then
	kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	if [ -z "$kpkg" ]; then
		apt-get update -qq
		kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	fi
	echo "setup: downloading $kpkg for the diskless guest into $guest_cache" >&2
	install -d -m 0755 "$guest_cache"
	staging=$(mktemp -d "$guest_cache/.download.XXXXXX")
	(cd "$staging" && apt-get download -qq "$kpkg" 2>/dev/null || { apt-get update -qq && apt-get download -qq "$kpkg"; })
	mv "$staging"/*.deb "$guest_cache"/
	rmdir "$staging"
fi
# arm64 GRUB for the arm64 UEFI test: downloaded and unpacked by the test,
# never installed (the package is arm64's).
arm_cache=/var/cache/pxebootfs-arm64
if ! ls "$arm_cache"/grub-efi-arm64-bin_*_arm64.deb >/dev/null 2>&1; then
	dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
	apt-get update -qq
	echo "setup: downloading grub-efi-arm64-bin:arm64 into $arm_cache" >&2
	install -d -m 0755 "$arm_cache"
	staging=$(mktemp -d "$arm_cache/.download.XXXXXX")
	chmod 0755 "$staging"
	(cd "$staging" && apt-get download -qq grub-efi-arm64-bin:arm64)
	mv "$staging"/*.deb "$arm_cache"/
	rmdir "$staging"
fi
modprobe fuse 2>/dev/null || true
modprobe overlay 2>/dev/null || true
echo "setup: ok ($(go version))" >&2
