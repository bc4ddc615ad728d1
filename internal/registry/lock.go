package registry

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const lockName = "lock"

// ErrInUse is matched (with errors.Is) by the error [Open] returns when
// another process holds the state_dir's lock.
var ErrInUse = errors.New("state_dir in use")

type inUseError struct {
	dir string
	pid string // as read from the lock file; "unknown" if unreadable
}

func (e *inUseError) Error() string {
	return fmt.Sprintf("state_dir %s is in use by another pxebootfs (pid %s)", e.dir, e.pid)
}

func (e *inUseError) Is(target error) bool { return target == ErrInUse }

// lockDir takes the exclusive lock on dir's lock file and records our pid in
// it. flock (not fcntl) locks belong to the open file description, so a
// second Open in the same process conflicts too, and the kernel drops the
// lock when the process dies, however it dies.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	fd := int(f.Fd())
	for {
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &inUseError{dir: dir, pid: readPID(path)}
		}
		return nil, fmt.Errorf("flock %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("truncate %s: %w", path, err)
	}
	if _, err := f.WriteAt(pid, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write pid to %s: %w", path, err)
	}
	return f, nil
}

// readPID reads the holder's pid for the error message. The holder may have
// locked but not yet written it, hence "unknown" rather than an error.
func readPID(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	s := strings.TrimSpace(string(b))
	if _, err := strconv.Atoi(s); err != nil {
		return "unknown"
	}
	return s
}

func unlockDir(f *os.File) error {
	// Closing alone would drop the lock; unlocking first makes the release
	// explicit and reports a failure we could otherwise not see.
	err := unix.Flock(int(f.Fd()), unix.LOCK_UN)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("release lock: %w", err)
	}
	return nil
}
