package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/testenv"

	pxfs "github.com/pxebootfs/pxebootfs/fs"
)

// binary is the pxebootfs binary built once for the whole package.
var binary string

// binaryEnv passes the built binary to the re-executed, NFS-isolated test
// process, so it is built once.
const binaryEnv = "PXEBOOTFS_E2E_BINARY"

func TestMain(m *testing.M) {
	flag.Parse()
	if binary = os.Getenv(binaryEnv); binary != "" {
		os.Exit(testenv.IsolateNFSState(m))
	}
	dir, err := os.MkdirTemp("", "pxebootfs-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pxebootfs")
	args := []string{"build", "-o", binary}
	// Tests run the daemon under the race detector; benchmarks measure the
	// binary admins run.
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../../cmd/pxebootfs")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", build, err)
		os.Exit(1)
	}
	os.Setenv(binaryEnv, binary)
	// exportfs in these tests must not touch the machine's real exports:
	// the tests run in a private mount namespace with their own
	// /var/lib/nfs and /etc/exports.d (the daemons they start share it).
	code := testenv.IsolateNFSState(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// site is one test's boot server: a TFTP root whose pxelinux.cfg is a
// pxebootfs mount, and the config files behind it.
type site struct {
	t        testing.TB
	dir      string // config, template, static dir, ethers
	tftpRoot string
	mnt      string // tftpRoot/pxelinux.cfg
	cfg      string
	template string
	static   string
}

const demoTemplate = `# test template: <NODE> appears several times, so a size computed from one
# occurrence (as the original tool did) would truncate it.
DEFAULT linux
LABEL linux
  KERNEL vmlinuz
  APPEND initrd=initrd.img root=/dev/nfs nfsroot=127.0.0.1:/netboot/node/<NODE> ip=dhcp rw node=<NODE> ip={{.IP}} mac={{.MAC}} name={{.Name}}
`

// newSite lays out a site with cfgExtra appended to the [PXEBOOTFS] section.
func newSite(t testing.TB, cfgExtra string) *site {
	t.Helper()
	testenv.RequireRoot(t)
	base := t.TempDir()
	s := &site{
		t:        t,
		dir:      filepath.Join(base, "etc"),
		tftpRoot: filepath.Join(base, "tftpboot"),
	}
	s.mnt = filepath.Join(s.tftpRoot, "pxelinux.cfg")
	s.cfg = filepath.Join(s.dir, "pxebootfs.cfg")
	s.template = filepath.Join(s.dir, "pxelinux.cfg.template")
	s.static = filepath.Join(s.dir, "static")
	for _, d := range []string{s.dir, s.mnt, s.static} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.write(s.template, demoTemplate)
	s.write(filepath.Join(s.dir, "ethers"), "52:54:00:12:34:56 192.168.1.2\n")
	s.write(filepath.Join(s.static, "default"), "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n")
	// Every daemon gets its own state_dir (its control socket lives there),
	// never the machine's /var/lib/pxebootfs.
	if !strings.Contains(cfgExtra, "state_dir") {
		cfgExtra += "state_dir = " + filepath.Join(base, "state") + "\n"
	}
	s.write(s.cfg, "[PXEBOOTFS]\npxe_template: pxelinux.cfg.template\nstatic_dir = static\nethers = ethers\n"+cfgExtra)
	return s
}

func (s *site) write(path, content string) {
	s.t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// daemon is a running `pxebootfs mount`.
type daemon struct {
	cmd    *exec.Cmd
	stderr *testenv.Buffer
	done   chan struct{}
	err    error
}

// start runs `pxebootfs mount` on the site and waits until it is mounted.
// The cleanup stops it and makes sure nothing stays mounted.
func (s *site) start(args ...string) *daemon {
	s.t.Helper()
	d := &daemon{stderr: &testenv.Buffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(binary, append(append([]string{"mount", "-c", s.cfg}, args...), s.mnt)...)
	d.cmd.Stderr = d.stderr
	// If the test process is killed before its cleanup runs, the daemon
	// unmounts and exits instead of lingering with its mount.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	s.t.Cleanup(func() {
		d.stop(s.t)
		if p := os.Getenv("PXEBOOTFS_DAEMON_LOG"); p != "" {
			// For reading a benchmark's timings: every daemon of the
			// run, one after another.
			if f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
				f.WriteString(d.stderr.String())
				f.Close()
			}
		}
		if s.t.Failed() {
			s.t.Logf("pxebootfs log:\n%s", d.stderr.String())
		}
		if mounted(s.mnt) {
			s.t.Errorf("%s still mounted after the daemon stopped", s.mnt)
			unix.Unmount(s.mnt, unix.MNT_DETACH)
		}
	})
	for !serving(s.mnt) {
		select {
		case <-d.done:
			s.t.Fatalf("pxebootfs exited before mounting: %v\n%s", d.err, d.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return d
}

// stop sends SIGTERM and waits; it returns the exit error.
func (d *daemon) stop(t testing.TB) error {
	select {
	case <-d.done:
		return d.err
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		t.Errorf("pxebootfs did not exit within 30 s of SIGTERM")
	}
	return d.err
}

// serving reports whether a live pxebootfs is mounted at dir: a dead mount
// left by a killed daemon is in the mount table too, until the next daemon
// clears it.
func serving(dir string) bool { return mounted(dir) && !pxfs.Dead(dir) }

func mounted(dir string) bool {
	ok, err := mountinfo.Mounted(dir)
	return err == nil && ok
}

// run runs the binary with args and returns stdout, stderr and exit code.
func run(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	return runTimeout(t, 10*time.Minute, args...)
}

// runTimeout is run, killing the command (by its PID) after timeout: a
// command that was expected to exit must not hang the test.
func runTimeout(t testing.TB, timeout time.Duration, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s: still running after %v; killed", cmd, timeout)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return stdout.String(), strings.TrimSpace(stderr.String()), code
}

// render returns `pxebootfs render NAME` for the site.
func (s *site) render(name string) []byte {
	s.t.Helper()
	out, errOut, code := run(s.t, "render", "-c", s.cfg, name)
	if code != 0 {
		s.t.Fatalf("render %s: exit %d: %s", name, code, errOut)
	}
	return []byte(out)
}

// waitLog waits until the daemon's log contains s: its stderr reaches us
// through a pipe, a moment after the daemon wrote it.
func (d *daemon) waitLog(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.stderr.String(), s) {
		if time.Now().After(deadline) {
			t.Errorf("log never said %q:\n%s", s, d.stderr.String())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
