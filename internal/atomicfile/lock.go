package atomicfile

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrLockBusy is returned by Locked with LOCK_NB while another process
// holds the lock.
var ErrLockBusy = errors.New("lock held by another process")

// Locked runs fn holding a flock(2) of the file at path (created 0600 if
// missing), how being LOCK_EX or LOCK_SH, with LOCK_NB not to wait. The
// stores that rewrite an index with Write take it around read, change and
// write, so that two processes never interleave their changes.
func Locked(path string, how int, fn func() error) error {
	lock, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer lock.Close()
	for {
		err = unix.Flock(int(lock.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	switch {
	case errors.Is(err, unix.EWOULDBLOCK):
		return ErrLockBusy
	case err != nil:
		return fmt.Errorf("lock %s: %w", path, err)
	}
	return fn()
}
