package generator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// outputCap bounds what is kept of each of a program's stdout and stderr
// for the log.
const outputCap = 64 << 10

// sizePoll is how often a running program's output is measured, so a
// runaway program is stopped near MaxSize instead of filling the disk
// until its timeout.
const sizePoll = 50 * time.Millisecond

// pipeDelay bounds how long Wait waits for stdout and stderr to close after
// the program exited, should a process outside its group still hold them.
const pipeDelay = time.Second

// exec runs the program once for q and returns what it wrote to fd 3.
func (r *Runner) exec(q Request) ([]byte, error) {
	start := time.Now()
	args := q.Args()
	cmdline := commandLine(r.opt.Program, args)
	log := r.log.With("name", q.Name)
	out, err := r.tempFile()
	if err != nil {
		err = fmt.Errorf("%s: output file: %v: %w", cmdline, err, ErrStart)
		log.Error("generator failed to start", "err", err)
		return nil, err
	}
	defer out.Close()

	cmd := exec.Command(r.opt.Program, args...)
	cmd.Env = Env
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{out} // becomes fd 3
	stdout, stderr := &capped{}, &capped{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A group of its own, so a timeout kills what it started as well.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = pipeDelay
	if err := cmd.Start(); err != nil {
		err = fmt.Errorf("%s: %v: %w", cmdline, err, ErrStart)
		log.Error("generator failed to start", "err", err)
		return nil, err
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { waitExited(pid); close(exited) }()
	timeout := time.NewTimer(r.opt.Timeout)
	defer timeout.Stop()
	poll := time.NewTicker(sizePoll)
	defer poll.Stop()
	var killedFor error
wait:
	for {
		select {
		case <-exited:
			break wait
		case <-timeout.C:
			killedFor = ErrTimeout
		case <-poll.C:
			if fileSize(out) > r.opt.MaxSize {
				killedFor = ErrTooLarge
			}
		}
		if killedFor != nil {
			killGroup(pid)
			<-exited
			break
		}
	}
	// Whatever the program left running in its group goes too. The leader
	// is exited but not reaped yet, so its pid, the group's id, cannot have
	// been reused by an unrelated process.
	killGroup(pid)
	waitErr := cmd.Wait()
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		// The program exited 0; only a straggler outside its group kept
		// stdout or stderr open. Its content is on fd 3, not there.
		waitErr = nil
	}

	attrs := []any{"cmd", cmdline, "duration", time.Since(start)}
	if s := stderr.String(); s != "" {
		attrs = append(attrs, "stderr", s)
	}
	if s := stdout.String(); s != "" {
		attrs = append(attrs, "stdout", s)
	}
	fail := func(reason error, detail string) ([]byte, error) {
		err := fmt.Errorf("%s: %s: %w", cmdline, detail, reason)
		if s := stderr.String(); s != "" {
			err = fmt.Errorf("%w; stderr: %q", err, s)
		}
		return nil, err
	}
	n := fileSize(out)
	switch {
	case killedFor != nil:
		_, err := fail(killedFor, fmt.Sprintf("killed after %v with %d bytes written", time.Since(start).Round(time.Millisecond), n))
		log.Warn("generator killed", append(attrs, "err", err)...)
		return nil, err
	case waitErr != nil:
		_, err := fail(ErrDeclined, waitErr.Error())
		// Refusing a name is the normal way to say "not mine": pxelinux
		// probes several names per boot. Loud only if it said why.
		log.Log(context.Background(), levelFor(stderr), "generator declined", append(attrs, "err", waitErr)...)
		return nil, err
	case n == 0:
		_, err := fail(ErrEmpty, "exit 0")
		log.Log(context.Background(), levelFor(stderr), "generator wrote nothing", attrs...)
		return nil, err
	case n > r.opt.MaxSize:
		_, err := fail(ErrTooLarge, fmt.Sprintf("%d bytes, limit %d", n, r.opt.MaxSize))
		log.Warn("generator output too large", append(attrs, "err", err)...)
		return nil, err
	}
	data := make([]byte, n)
	m, err := out.ReadAt(data, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("%s: read output: %w", cmdline, err)
		log.Error("generator output unreadable", append(attrs, "err", err)...)
		return nil, err
	}
	log.Log(context.Background(), levelFor(stderr), "generated", append(attrs, "bytes", m)...)
	return data[:m], nil
}

// levelFor logs a run at Info when the program had something to say, else
// at Debug: a quiet refusal is routine.
func levelFor(stderr *capped) slog.Level {
	if stderr.String() != "" {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// markInheritedCloexec sets close-on-exec on every descriptor above 2 this
// process holds. Go opens its own that way, but descriptors inherited from
// whoever started the daemon are not, and exec would pass them on to every
// program: the interface promises fds 0 to 3 and nothing else.
func markInheritedCloexec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		// The directory's own descriptor is gone by now: EBADF, harmless.
		unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	}
}

// tempFile opens the file the program writes to: anonymous (O_TMPFILE) so
// nothing is ever visible by name, or created and unlinked at once where
// the filesystem lacks O_TMPFILE.
func (r *Runner) tempFile() (*os.File, error) {
	dir := r.opt.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	for {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err == unix.EINTR {
			continue
		}
		if err == nil {
			return os.NewFile(uintptr(fd), filepath.Join(dir, "(generator output)")), nil
		}
		break
	}
	f, err := os.CreateTemp(dir, ".pxebootfs-generator-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func fileSize(f *os.File) int64 {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

// waitExited blocks until pid has exited, without reaping it (WNOWAIT):
// the group can then be killed while its id is still reserved.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != unix.EINTR {
			return
		}
	}
}

// killGroup SIGKILLs process group pgid; ESRCH (nothing left) is fine.
func killGroup(pgid int) {
	for unix.Kill(-pgid, unix.SIGKILL) == unix.EINTR {
	}
}

// commandLine renders argv for logs and errors, quoting what needs it.
func commandLine(prog string, args []string) string {
	parts := make([]string, 0, 1+len(args))
	for _, a := range append([]string{prog}, args...) {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == '"' || r == '\'' || r == '\\' || r > '~' }) {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// capped keeps the first outputCap bytes written to it.
type capped struct {
	mu      sync.Mutex
	b       bytes.Buffer
	dropped int64
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := outputCap - c.b.Len()
	if room >= len(p) {
		c.b.Write(p)
	} else {
		c.b.Write(p[:max(room, 0)])
		c.dropped += int64(len(p) - max(room, 0))
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.TrimRight(c.b.String(), "\n")
	if c.dropped > 0 {
		s += fmt.Sprintf(" [%d more bytes dropped]", c.dropped)
	}
	return s
}
