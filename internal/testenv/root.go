// Package testenv holds helpers shared by pxebootfs's tests: gating root-only
// tests, and starting real tftpd-hpa servers and TFTP clients on loopback.
package testenv

import (
	"os"
	"testing"
)

// DisallowSkipEnv, when set to a non-empty value (CI sets it), turns every
// skip for a missing privilege or tool into a failure: a skipped root test in
// CI would otherwise look like a pass.
const DisallowSkipEnv = "PXEBOOTFS_TEST_DISALLOW_SKIP"

// Skip skips the test with reason, or fails it when skips are disallowed.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(DisallowSkipEnv) != "" {
		t.Fatalf("test needs what is missing here, and %s forbids skipping: %s", DisallowSkipEnv, reason)
	}
	t.Skipf("SKIPPED (needs setup): %s", reason)
}

// RequireRoot skips (or fails, see DisallowSkipEnv) unless running as root,
// which real FUSE, overlayfs, exportfs and tftpd tests need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "must run as root for real mounts, exports and tftpd")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		Skip(t, "/dev/fuse is not available: "+err.Error())
	}
}
