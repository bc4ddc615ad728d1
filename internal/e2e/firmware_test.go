package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
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

// TestSecureBoot: OVMF with Secure Boot enforced (Microsoft's keys, q35
// with SMM) boots the chain Debian ships — signed shim as bootx64.efi,
// which fetches the signed network GRUB as grubx64.efi, which reads its
// prefix /grub from the GRUB mount (the built-in grub.cfg, then the node's
// grub.cfg-<mac>) — and Debian's signed kernel, which says on the console
// that Secure Boot is on and runs the guest's initrd. With the unsigned
// GRUB in the signed one's place the same firmware refuses it: enforcement
// is on.
func TestSecureBoot(t *testing.T) {
	for _, f := range []struct{ path, pkg string }{
		{testenv.OVMFCodeSecure, "ovmf"}, {testenv.OVMFVarsMS, "ovmf"},
		{testenv.ShimSigned, "shim-signed"}, {testenv.GRUBNetSigned, "grub-efi-amd64-signed"}, {testenv.GRUBNetEFI, "grub-efi-amd64-bin"},
	} {
		testenv.RequireFile(t, f.path, f.pkg)
	}
	guest := testenv.BuildGuest(t)
	s := newSite(t, "")
	withGRUB(t, s, "echo PXEBOOTFS-SB node=<NODE> mac={{.MAC}}\nlinux /vmlinuz console=ttyS0,115200 pxb.node=<NODE>\ninitrd /initrd.gz\nboot\n")
	s.start()
	testenv.CopyFile(t, testenv.ShimSigned, filepath.Join(s.tftpRoot, "bootx64.efi"))
	testenv.CopyFile(t, guest.Kernel, filepath.Join(s.tftpRoot, "vmlinuz"))
	testenv.CopyFile(t, guest.Initrd, filepath.Join(s.tftpRoot, "initrd.gz"))
	boot := func(grub string) *testenv.QEMU {
		t.Helper()
		testenv.CopyFile(t, grub, filepath.Join(s.tftpRoot, "grubx64.efi"))
		vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
		testenv.CopyFile(t, testenv.OVMFVarsMS, vars)
		return testenv.StartQEMU(t,
			"-m", "1024", "-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+testenv.OVMFCodeSecure,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars,
			"-netdev", "user,id=n0,tftp="+s.tftpRoot+",bootfile=bootx64.efi",
			"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=",
			"-boot", "n")
	}
	q := boot(testenv.GRUBNetSigned)
	took := q.WaitFor(t, "PXEBOOTFS-SB node=C0A80102 mac=52:54:00:12:34:56", 3*time.Minute)
	t.Logf("Secure Boot: OVMF -> shim -> signed GRUB -> the GRUB mount's grub.cfg-52:54:00:12:34:56 in %v", took.Round(time.Second))
	took = q.WaitFor(t, "Secure boot enabled", 3*time.Minute)
	q.WaitFor(t, "pxebootfs-initrd:", 3*time.Minute)
	t.Logf("... -> Debian's signed kernel with Secure Boot enabled, running the guest's initrd, in %v", took.Round(time.Second))

	q2 := boot(testenv.GRUBNetEFI)
	q2.WaitFor(t, "Security Violation", 3*time.Minute)
	if strings.Contains(q2.Console(), "PXEBOOTFS-SB") {
		t.Error("an unsigned GRUB ran under Secure Boot")
	}
}

// TestARM64UEFIBootsGRUB: an arm64 UEFI node (qemu-system-aarch64, virt,
// Debian's AAVMF) netboots Debian's arm64 network GRUB (grubnetaa64.efi,
// unpacked from the package scripts/setup.sh downloads, not installed),
// which reads the same GRUB mount: the built-in grub.cfg, then the node's
// grub.cfg-<mac>, whose marker shows on the console.
func TestARM64UEFIBootsGRUB(t *testing.T) {
	testenv.RequireFile(t, testenv.AAVMFCode, "qemu-efi-aarch64")
	debs, _ := filepath.Glob(filepath.Join(testenv.ARM64Cache, "grub-efi-arm64-bin_*_arm64.deb"))
	if len(debs) == 0 {
		testenv.Skip(t, "no grub-efi-arm64-bin arm64 package in "+testenv.ARM64Cache+" (scripts/setup.sh downloads it)")
	}
	unpacked := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", debs[len(debs)-1], unpacked).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v: %s", err, out)
	}
	s := newSite(t, "")
	withGRUB(t, s, "echo PXEBOOTFS-ARM64 node=<NODE> mac={{.MAC}} ip={{.IP}}\nhalt\n")
	s.start()
	testenv.CopyFile(t, filepath.Join(unpacked, "usr/lib/grub/arm64-efi/monolithic/grubnetaa64.efi"), filepath.Join(s.tftpRoot, "bootaa64.efi"))
	vars := filepath.Join(t.TempDir(), "AAVMF_VARS.fd")
	testenv.CopyFile(t, testenv.AAVMFVars, vars)
	q := testenv.StartQEMUBinary(t, "qemu-system-aarch64",
		"-machine", "virt", "-cpu", "cortex-a57", "-m", "512",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+testenv.AAVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-netdev", "user,id=n0,tftp="+s.tftpRoot+",bootfile=bootaa64.efi",
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=")
	took := q.WaitFor(t, "PXEBOOTFS-ARM64 node=C0A80102 mac=52:54:00:12:34:56 ip=192.168.1.2", 4*time.Minute)
	t.Logf("arm64 UEFI (AAVMF) -> grubnetaa64.efi -> grub.cfg -> grub.cfg-52:54:00:12:34:56 in %v", took.Round(time.Second))
}
