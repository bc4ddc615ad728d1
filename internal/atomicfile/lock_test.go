package atomicfile

import (
	"errors"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLocked: LOCK_NB while another holder has the lock is ErrLockBusy and
// runs nothing; waiting takes it once it is free.
func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	ran := 0
	err := Locked(path, unix.LOCK_EX, func() error {
		if err := Locked(path, unix.LOCK_EX|unix.LOCK_NB, func() error { ran++; return nil }); !errors.Is(err, ErrLockBusy) {
			t.Errorf("nested non-blocking lock: %v, want ErrLockBusy", err)
		}
		return nil
	})
	if err != nil || ran != 0 {
		t.Fatalf("Locked: %v, inner ran %d times", err, ran)
	}
	if err := Locked(path, unix.LOCK_EX|unix.LOCK_NB, func() error { ran++; return nil }); err != nil || ran != 1 {
		t.Errorf("free lock: %v, ran %d", err, ran)
	}
}
