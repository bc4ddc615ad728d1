package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Firmware and boot loaders from Debian's packages (ovmf, grub-efi-amd64-bin).
const (
	OVMFCode   = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars   = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	GRUBNetEFI = "/usr/lib/grub/x86_64-efi/monolithic/grubnetx64.efi"
	// UEFI Secure Boot: OVMF with Microsoft's keys enrolled (q35, SMM),
	// Debian's signed shim and signed network GRUB.
	OVMFCodeSecure = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	OVMFVarsMS     = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
	ShimSigned     = "/usr/lib/shim/shimx64.efi.signed"
	GRUBNetSigned  = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
	// arm64 UEFI: AAVMF (qemu-efi-aarch64) and Debian's arm64 GRUB
	// package, downloaded by scripts/setup.sh into ARM64Cache.
	AAVMFCode   = "/usr/share/AAVMF/AAVMF_CODE.fd"
	AAVMFVars   = "/usr/share/AAVMF/AAVMF_VARS.fd"
	ARM64Cache  = "/var/cache/pxebootfs-arm64"
	PXELinux    = "/usr/lib/PXELINUX/pxelinux.0"               // pxelinux
	LDLinux     = "/usr/lib/syslinux/modules/bios/ldlinux.c32" // syslinux-common
	IPXEROM     = "/usr/lib/ipxe/qemu/pxe-e1000.rom"           // ipxe-qemu: QEMU's e1000 boot ROM
	qemuBinary  = "qemu-system-x86_64"
	qemuLogName = "console.log"
)

// QEMU is a guest started by StartQEMU.
type QEMU struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the guest exited
}

// RequireFile skips (or fails, see DisallowSkipEnv) unless path exists.
func RequireFile(t testing.TB, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Skip(t, path+" is missing (install "+pkg+"): "+err.Error())
	}
}

// StartQEMU boots a guest under TCG (KVM guests fail on these machines)
// with no display and its serial console in a log file; args are the
// machine's firmware, network and disks. The cleanup kills the guest, by
// PID, and on failure prints its console.
func StartQEMU(t testing.TB, args ...string) *QEMU {
	t.Helper()
	return startQEMU(t, nil, args)
}

// StartQEMUIn is StartQEMU with the guest in network namespace ns (its tap
// devices live there; see BootNet).
func StartQEMUIn(t testing.TB, ns *NetNS, args ...string) *QEMU {
	t.Helper()
	return startQEMU(t, ns, args)
}

// StartQEMUBinary is StartQEMU with another QEMU, e.g.
// qemu-system-aarch64.
func StartQEMUBinary(t testing.TB, binary string, args ...string) *QEMU {
	t.Helper()
	return startQEMUWith(t, binary, nil, args)
}

func startQEMU(t testing.TB, ns *NetNS, args []string) *QEMU {
	t.Helper()
	return startQEMUWith(t, qemuBinary, ns, args)
}

func startQEMUWith(t testing.TB, binary string, ns *NetNS, args []string) *QEMU {
	t.Helper()
	bin := RequireTool(t, binary)
	log := filepath.Join(t.TempDir(), qemuLogName)
	out, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"-accel", "tcg", "-m", "256", "-nographic", "-serial", "mon:stdio", "-no-reboot", "-vga", "none"}
	cmd := exec.Command(bin, append(base, args...)...)
	if ns != nil {
		// nsenter execs QEMU: the PID killed at cleanup is QEMU's.
		cmd = ns.Command(context.Background(), bin, append(base, args...)...)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	q := &QEMU{cmd: cmd, log: log, done: done}
	go func() { cmd.Wait(); out.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("guest console:\n%s", q.Console())
		}
	})
	return q
}

// Console is what the guest wrote to its serial console so far, without
// terminal escape sequences and carriage returns: the firmware and
// pxelinux move the cursor while printing, and a move can land inside a
// line (seen: pxelinux's "ESC[25;50H", and a bare CR after the first
// letter of a config's say line: "P\rXEBOOTFS-BIOS node=…").
func (q *QEMU) Console() string {
	b, _ := os.ReadFile(q.log)
	return cleanConsole(string(b))
}

// cleanConsole removes terminal escape sequences and carriage returns.
func cleanConsole(s string) string {
	return strings.ReplaceAll(escapes.ReplaceAllString(s, ""), "\r", "")
}

// escapes matches ANSI/VT100 control sequences: CSI ("ESC [" ... final
// byte) and the two-byte ESC sequences (SeaBIOS starts with "ESC c").
var escapes = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[0-~])`)

// WaitFor waits until the console shows marker, or fails the test after
// timeout (or if the guest exits first).
func (q *QEMU) WaitFor(t testing.TB, marker string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if strings.Contains(q.Console(), marker) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("no %q on the guest's console after %v", marker, time.Since(start).Round(time.Second))
		}
		select {
		case <-q.done:
			if !strings.Contains(q.Console(), marker) {
				t.Fatalf("the guest exited without %q on its console", marker)
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// CopyFile copies src to dst (firmware variables, boot loaders, kernels),
// world-readable: tftpd-hpa serves only such files.
func CopyFile(t testing.TB, src, dst string) {
	t.Helper()
	if err := copyFile(src, dst, 0o644); err != nil {
		t.Fatal(err)
	}
}
