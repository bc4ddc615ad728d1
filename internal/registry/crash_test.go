package registry

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// The crash and lock tests re-execute the test binary as a child that uses
// a registry; these environment variables select what the child does.
const (
	childModeEnv  = "PXEBOOTFS_REGISTRY_TEST_CHILD" // "churn" or "hold"
	childDirEnv   = "PXEBOOTFS_REGISTRY_TEST_DIR"
	childRoundEnv = "PXEBOOTFS_REGISTRY_TEST_ROUND"
)

func TestMain(m *testing.M) {
	switch mode := os.Getenv(childModeEnv); mode {
	case "":
		os.Exit(m.Run())
	case "churn":
		os.Exit(churnChild())
	case "hold":
		os.Exit(holdChild())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", childModeEnv, mode)
		os.Exit(2)
	}
}

// churnChild changes the registry from several goroutines until it is
// killed, printing each change on stdout only after the call returned, that
// is after the registry said it was on disk:
//
//	A node fsid   allocated
//	B node count  boot recorded; count is the boot count then
//	F node fsid   forgotten
func churnChild() int {
	round, err := strconv.Atoi(os.Getenv(childRoundEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad round:", err)
		return 2
	}
	r, err := Open(Options{Dir: os.Getenv(childDirEnv), StartFSID: 100})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var (
		outMu sync.Mutex
		out   = bufio.NewWriter(os.Stdout)
		next  atomic.Int64
	)
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i >= 1<<12 {
					return
				}
				id := node.FromUint32(uint32(0x0A000000 + round<<12 + i))
				n, _, err := r.Allocate(id, "", map[uint32]string{101: "/other/export"})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				say("A %s %d", id, n.FSID)
				if i%3 == 0 {
					if err := r.RecordBoot(id, time.Now(), ""); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(2)
					}
					say("B %s 1", id)
				}
				if i%5 == 0 {
					if err := r.Forget(id); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(2)
					}
					say("F %s %d", id, n.FSID)
				}
			}
		})
	}
	wg.Wait()
	// Out of names before being killed: wait for the kill.
	select {}
}

// holdChild opens the registry, says "ready" and holds it until stdin closes.
func holdChild() int {
	r, err := Open(Options{Dir: os.Getenv(childDirEnv)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	if err := r.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

func startChild(t *testing.T, mode, dir string, extraEnv ...string) (*exec.Cmd, *bufio.Scanner, io.WriteCloser, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeEnv+"="+mode, childDirEnv+"="+dir)
	cmd.Env = append(cmd.Env, extraEnv...)
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, bufio.NewScanner(stdout), stdin, stderr
}

// TestCrashSafety SIGKILLs a child in the middle of a stream of changes, at
// a different moment each round, and checks after each kill that the state
// opens, is consistent, and holds every change the child was told was
// durable.
func TestCrashSafety(t *testing.T) {
	const rounds = 20
	dir := t.TempDir()
	type want struct {
		fsid      uint32
		forgotten bool
		boots     uint64
	}
	wants := make(map[node.ID]*want)
	staleSeen := 0
	for round := range rounds {
		cmd, lines, stdin, stderr := startChild(t, "churn", dir, childRoundEnv+"="+strconv.Itoa(round))
		defer stdin.Close()

		parse := func(line string) {
			var op, name string
			var v uint64
			if _, err := fmt.Sscanf(line, "%s %s %d", &op, &name, &v); err != nil {
				t.Fatalf("round %d: child said %q: %v", round, line, err)
			}
			id, err := node.ParseHex(name)
			if err != nil {
				t.Fatalf("round %d: child said %q: %v", round, line, err)
			}
			w := wants[id]
			if w == nil {
				w = &want{}
				wants[id] = w
			}
			switch op {
			case "A":
				w.fsid = uint32(v)
			case "B":
				w.boots = v
			case "F":
				w.forgotten = true
			}
		}
		// Kill after a random number of durable changes (0: possibly before
		// or during Open) plus a random sliver of time, so that the kill
		// lands at varying points of the write path.
		k := rand.IntN(150)
		for i := 0; i < k && lines.Scan(); i++ {
			parse(lines.Text())
		}
		time.Sleep(rand.N(2 * time.Millisecond))
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		// Changes reported between our decision and the kill count too.
		for lines.Scan() {
			parse(lines.Text())
		}
		err := cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != -1 {
			t.Fatalf("round %d: child ended with %v before it was killed; stderr:\n%s", round, err, stderr)
		}

		if m, _ := filepath.Glob(filepath.Join(dir, "."+fileName+".tmp-*")); len(m) > 0 {
			staleSeen++
		}
		r, err := Open(Options{Dir: dir, StartFSID: 100})
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", round, err)
		}
		fsids := make(map[uint32]node.ID)
		for _, n := range r.All() {
			if other, dup := fsids[n.FSID]; dup {
				t.Errorf("round %d: fsid %d held by %s and %s", round, n.FSID, other, n.ID)
			}
			fsids[n.FSID] = n.ID
			if n.FSID == 101 {
				t.Errorf("round %d: %s got fsid 101, which the child said was used", round, n.ID)
			}
		}
		retired := make(map[uint32]bool)
		for _, fsid := range r.Retired() {
			if other, live := fsids[fsid]; live {
				t.Errorf("round %d: retired fsid %d reused by %s", round, fsid, other)
			}
			retired[fsid] = true
		}
		for id, w := range wants {
			n, ok := r.Get(id)
			switch {
			case w.fsid == 0:
				// Only a boot or forget line survived for a node whose
				// allocation line was lost? Impossible: lines are in order.
				t.Errorf("round %d: %s reported without its allocation", round, id)
			case ok && w.forgotten:
				t.Errorf("round %d: %s present although its Forget returned", round, id)
			case ok && n.FSID != w.fsid:
				t.Errorf("round %d: %s has fsid %d, want %d", round, id, n.FSID, w.fsid)
			case ok && n.BootCount < w.boots:
				// A first boot is durable (the child boots each node once).
				t.Errorf("round %d: %s has %d boots, want >= %d", round, id, n.BootCount, w.boots)
			case !ok && !retired[w.fsid]:
				// Absent is right only if it was forgotten (its Forget may
				// have returned just before the kill, unreported).
				t.Errorf("round %d: %s (fsid %d) lost: neither present nor retired", round, id, w.fsid)
			}
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "."+fileName+".tmp-*")); len(m) > 0 {
			t.Errorf("round %d: temp files left after Open: %v", round, m)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds, %d changes reported durable, %d kills left a temp file behind", rounds, len(wants), staleSeen)
	if len(wants) == 0 {
		t.Error("the child never reported a change: the test exercised nothing")
	}
}

func TestLockHeldByOtherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd, lines, stdin, stderr := startChild(t, "hold", dir)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("child did not get ready: %q; stderr:\n%s", lines.Text(), stderr)
	}
	_, err := Open(Options{Dir: dir})
	want := fmt.Sprintf("state_dir %s is in use by another pxebootfs (pid %d)", dir, cmd.Process.Pid)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open while the child holds the lock = %v, want %q", err, want)
	}
	if _, err := OpenReadOnly(dir); err != nil {
		t.Errorf("OpenReadOnly while the child holds the lock: %v", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v; stderr:\n%s", err, stderr)
	}
	r := openT(t, Options{Dir: dir})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
