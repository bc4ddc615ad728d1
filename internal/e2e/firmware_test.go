package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// Real firmware and boot loaders from Debian's packages, under QEMU (TCG),
// fetching through the mounts. Each takes 5 to 30 s here.

// TestUEFIFirmwareBootsGRUB: real UEFI firmware (OVMF) under QEMU netboots
// Debian's grubnetx64.efi from the TFTP root; GRUB loads the built-in
// grub.cfg from the GRUB mount, which chains to grub.cfg-<its MAC>, which
// pxebootfs renders for the node the MAC names in ethers: the marker on
// the serial console carries the node's hex IP and MAC.
func TestUEFIFirmwareBootsGRUB(t *testing.T) {
	testenv.RequireFile(t, testenv.OVMFCode, "ovmf")
	testenv.RequireFile(t, testenv.GRUBNetEFI, "grub-efi-amd64-bin")
	s := newSite(t, "")
	withGRUB(t, s, "echo PXEBOOTFS-GRUB node=<NODE> mac={{.MAC}} ip={{.IP}}\nhalt\n")
	s.start()
	testenv.CopyFile(t, testenv.GRUBNetEFI, filepath.Join(s.tftpRoot, "bootx64.efi"))
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	testenv.CopyFile(t, testenv.OVMFVars, vars)
	q := testenv.StartQEMU(t,
		"-drive", "if=pflash,format=raw,readonly=on,file="+testenv.OVMFCode,
		"-drive", "if=pflash,format=raw,file="+vars,
		// Slirp's own TFTP server reads the TFTP root, the mounts included.
		"-netdev", "user,id=n0,tftp="+s.tftpRoot+",bootfile=bootx64.efi",
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=",
		"-boot", "n")
	took := q.WaitFor(t, "PXEBOOTFS-GRUB node=C0A80102 mac=52:54:00:12:34:56 ip=192.168.1.2", 3*time.Minute)
	t.Logf("UEFI firmware -> GRUB -> grub.cfg -> grub.cfg-52:54:00:12:34:56 in %v", took.Round(time.Second))
}

// TestBIOSFirmwareBootsPXELinux: QEMU's BIOS with its e1000 iPXE ROM
// netboots Debian's pxelinux.0, which walks its search order (01-<mac>
// first) through the pxelinux.cfg mount; the config rendered for the node
// ethers names puts a marker on the serial console.
func TestBIOSFirmwareBootsPXELinux(t *testing.T) {
	testenv.RequireFile(t, testenv.PXELinux, "pxelinux")
	testenv.RequireFile(t, testenv.LDLinux, "syslinux-common")
	testenv.RequireFile(t, testenv.IPXEROM, "ipxe-qemu")
	s := newSite(t, "")
	s.write(s.template, "SERIAL 0 115200\nSAY PXEBOOTFS-BIOS node=<NODE> mac={{.MAC}} ip={{.IP}}\nPROMPT 0\nDEFAULT local\nLABEL local\n  LOCALBOOT 0\n")
	s.start()
	testenv.InstallPXELinux(t, s.tftpRoot)
	q := testenv.StartQEMU(t,
		"-netdev", "user,id=n0,tftp="+s.tftpRoot+",bootfile=pxelinux.0",
		"-device", "e1000,netdev=n0,mac=52:54:00:12:34:56",
		"-boot", "n")
	took := q.WaitFor(t, "PXEBOOTFS-BIOS node=C0A80102 mac=52:54:00:12:34:56 ip=192.168.1.2", 3*time.Minute)
	t.Logf("BIOS -> iPXE -> pxelinux -> pxelinux.cfg/01-52-54-00-12-34-56 in %v", took.Round(time.Second))
}
