package fs

import (
	"context"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// lookupLog remembers, briefly, which task was answered with which
// version of a name. An open(2) walks the path (LOOKUP, unless the kernel
// has the entry cached) and then sends OPEN, both from the same task:
// a LOOKUP by that task just before vouches that its walk found that
// version while it was current. It is kept by inode number, not on the
// inode: the kernel may forget an inode between a revalidating LOOKUP and
// the one that follows it, and go-fuse then makes a new one.
type lookupLog struct {
	mu sync.Mutex
	m  map[lookupKey]time.Time
}

type lookupKey struct {
	pid uint32 // the kernel task (thread) that asked
	ino uint64
}

// lookupWindow is how long a task's LOOKUP vouches for its next OPEN; the
// two are microseconds apart within one open(2).
const lookupWindow = 100 * time.Millisecond

// pruneAt is the size at which old entries are dropped.
const pruneAt = 4096

// add notes that the task behind ctx was answered with inode ino.
func (l *lookupLog) add(ctx context.Context, ino uint64) {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[lookupKey]time.Time{}
	}
	if len(l.m) >= pruneAt {
		for k, at := range l.m {
			if now.Sub(at) > lookupWindow {
				delete(l.m, k)
			}
		}
	}
	l.m[lookupKey{c.Pid, ino}] = now
}

// take reports whether the task behind ctx was answered with inode ino
// just now, and forgets it: a LOOKUP vouches for the one OPEN that follows
// it in the same open(2), not for the task's later opens, which may use
// the kernel's cached entry of a version since replaced.
func (l *lookupLog) take(ctx context.Context, ino uint64) bool {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return false
	}
	k := lookupKey{c.Pid, ino}
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.m[k]
	delete(l.m, k)
	return ok && time.Since(at) <= lookupWindow
}
