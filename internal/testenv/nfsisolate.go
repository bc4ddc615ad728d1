package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// Isolating the NFS server state.
//
// exportfs keeps its export table in /var/lib/nfs/etab and reads /etc/exports
// and /etc/exports.d; tests that ran it against those would change the
// machine's real exports. IsolateNFSState re-executes the test binary in a
// private mount namespace in which /var/lib/nfs, /etc/exports and
// /etc/exports.d are empty temporary copies, so exportfs in the tests sees and
// changes only those. The namespace, and with it every export the tests made,
// disappears when the test binary exits.
//
// The protocol between the two processes is two environment variables:
// nfsIsolateDirEnv tells the re-executed child where to build its private
// state; nfsIsolatedEnv tells the child, and every process it starts (which
// share its namespace), that isolation is in place.
const (
	nfsIsolateDirEnv = "PXEBOOTFS_TEST_NFS_ISOLATE_DIR"
	nfsIsolatedEnv   = "PXEBOOTFS_TEST_NFS_ISOLATED"
)

// These are the paths exportfs (nfs-utils) has compiled in.
const (
	nfsStateDir   = "/var/lib/nfs"
	etcDir        = "/etc"
	etcExports    = "/etc/exports"
	etcExportsDir = "/etc/exports.d"
)

// nfsNotIsolated says why the NFS state is not isolated, for skip messages;
// empty once isolation is in place.
var nfsNotIsolated = "IsolateNFSState was not called from TestMain"

// IsolateNFSState runs m's tests with private NFS server state and returns
// the exit code for os.Exit. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(testenv.IsolateNFSState(m)) }
//
// As root, it re-executes the test binary in a private mount namespace where
// /var/lib/nfs (an empty etab and rmtab), /etc/exports (empty) and
// /etc/exports.d (empty, writable) are temporary, and returns the child's exit
// code; when the tests pass but left exports behind in the private etab, the
// child fails. Not as root, when already isolated, or when isolation cannot
// be set up, it runs m.Run() directly; tests that run exportfs must then call
// RequireNFSIsolation, which skips them (fails under DisallowSkipEnv) so that
// they never touch the real exports.
func IsolateNFSState(m *testing.M) int {
	switch {
	case os.Getenv(nfsIsolatedEnv) != "":
		// A process started by an isolated test binary shares its namespace.
		if err := checkNFSIsolated(); err != nil {
			nfsNotIsolated = err.Error()
		} else {
			nfsNotIsolated = ""
		}
		return m.Run()
	case os.Getenv(nfsIsolateDirEnv) != "":
		return runIsolatedChild(m)
	case os.Geteuid() != 0:
		nfsNotIsolated = "isolating NFS state needs root"
		return m.Run()
	}
	code, err := reexecIsolated()
	if err != nil {
		nfsNotIsolated = "cannot isolate NFS state: " + err.Error()
		fmt.Fprintf(os.Stderr, "testenv: %s; running without isolation, NFS tests will skip\n", nfsNotIsolated)
		return m.Run()
	}
	return code
}

// RequireNFSIsolation skips (or fails, see DisallowSkipEnv) unless the NFS
// server state is private to this test binary (see IsolateNFSState). Call it,
// after RequireRoot, in every test that runs exportfs.
func RequireNFSIsolation(t testing.TB) {
	t.Helper()
	if nfsNotIsolated != "" {
		Skip(t, "NFS server state is not isolated: "+nfsNotIsolated)
	}
}

// reexecIsolated runs this test binary again, with the same arguments, in a
// new private mount namespace and returns its exit code.
func reexecIsolated() (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find test binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "pxebootfs-nfs-state-")
	if err != nil {
		return 0, fmt.Errorf("create state dir: %w", err)
	}
	defer os.RemoveAll(dir)

	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), nfsIsolateDirEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Go makes "/" recursively private in the child after unsharing,
		// so no mount made there propagates back to the host.
		Unshareflags: syscall.CLONE_NEWNS,
		// If this process is killed (go test's own timeout), the child
		// must not linger.
		Pdeathsig: syscall.SIGKILL,
	}
	// Pdeathsig fires when the thread that started the child exits, not the
	// process; keep this goroutine on one thread until the child is done.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("re-execute %s in a new mount namespace: %w", exe, err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()

	err = cmd.Wait()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exitErr):
		if code := exitErr.ExitCode(); code > 0 {
			return code, nil
		}
		fmt.Fprintf(os.Stderr, "testenv: isolated test binary: %v\n", err)
		return 1, nil
	default:
		fmt.Fprintf(os.Stderr, "testenv: isolated test binary: %v\n", err)
		return 1, nil
	}
}

// runIsolatedChild is the re-executed test binary: it builds the private
// state, runs the tests, and fails them if they left exports behind.
func runIsolatedChild(m *testing.M) int {
	dir := os.Getenv(nfsIsolateDirEnv)
	os.Unsetenv(nfsIsolateDirEnv)
	if err := setupNFSIsolation(dir); err != nil {
		nfsNotIsolated = err.Error()
		fmt.Fprintf(os.Stderr, "testenv: %s; NFS tests will skip\n", err)
		return m.Run()
	}
	nfsNotIsolated = ""
	os.Setenv(nfsIsolatedEnv, "1")

	code := m.Run()
	etab, err := os.ReadFile(filepath.Join(nfsStateDir, "etab"))
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "testenv: check for exports left behind: %v\n", err)
		code = 1
	case len(strings.TrimSpace(string(etab))) > 0:
		fmt.Fprintf(os.Stderr, "testenv: tests left exports behind (private etab):\n%s", etab)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// setupNFSIsolation runs in the new mount namespace and puts private copies
// of the NFS state over the real paths, from files under dir.
func setupNFSIsolation(dir string) error {
	// Go already did this after unsharing; repeat it so that a mistake there
	// can never leak our mounts to the host.
	if err := mountRetry("none", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// With a kernel NFS server running, exportfs would also flush and feed
	// the live kernel export cache, which no mount namespace isolates.
	for _, p := range []string{"/proc/fs/nfsd/exports", "/proc/net/rpc/nfsd.export"} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("a kernel NFS server is active (%s exists); refusing to run exportfs tests against it", p)
		}
	}
	if fi, err := os.Stat(nfsStateDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s is missing (nfs-kernel-server not installed?): %v", nfsStateDir, err)
	}

	state := filepath.Join(dir, "var-lib-nfs")
	for _, d := range []string{state, filepath.Join(state, "sm"), filepath.Join(state, "sm.bak"), filepath.Join(state, "v4recovery")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// exportfs fails with "can't open etab for reading" when etab is absent.
	for _, f := range []string{"etab", "rmtab", "state"} {
		if err := os.WriteFile(filepath.Join(state, f), nil, 0o644); err != nil {
			return err
		}
	}
	if err := mountRetry(state, nfsStateDir, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s over %s: %w", state, nfsStateDir, err)
	}

	// A bind mount needs an existing mount point, and /etc/exports.d often
	// does not exist; only then lay an overlay over /etc, so that creating
	// the mount points changes the overlay's upper dir, never the real /etc.
	_, errD := os.Stat(etcExportsDir)
	_, errF := os.Stat(etcExports)
	if errD != nil || errF != nil {
		upper, work := filepath.Join(dir, "etc-upper"), filepath.Join(dir, "etc-work")
		for _, d := range []string{upper, work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
		}
		opts := "lowerdir=" + etcDir + ",upperdir=" + upper + ",workdir=" + work
		if err := mountRetry("overlay", etcDir, "overlay", 0, opts); err != nil {
			return fmt.Errorf("mount overlay over %s (%s): %w", etcDir, opts, err)
		}
		if errD != nil {
			if err := os.Mkdir(etcExportsDir, 0o755); err != nil {
				return fmt.Errorf("create %s in the overlay: %w", etcExportsDir, err)
			}
		}
		if errF != nil {
			if err := os.WriteFile(etcExports, nil, 0o644); err != nil {
				return fmt.Errorf("create %s in the overlay: %w", etcExports, err)
			}
		}
	}
	exportsD, exports := filepath.Join(dir, "exports.d"), filepath.Join(dir, "exports")
	if err := os.Mkdir(exportsD, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(exports, nil, 0o644); err != nil {
		return err
	}
	if err := mountRetry(exportsD, etcExportsDir, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s over %s: %w", exportsD, etcExportsDir, err)
	}
	if err := mountRetry(exports, etcExports, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s over %s: %w", exports, etcExports, err)
	}
	return checkNFSIsolated()
}

// checkNFSIsolated guards against a stray environment variable: isolation is
// real only if /var/lib/nfs and /etc/exports.d are mount points here.
func checkNFSIsolated() error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	want := map[string]bool{nfsStateDir: false, etcExportsDir: false, etcExports: false}
	for _, line := range strings.Split(string(data), "\n") {
		// Field 5 is the mount point (octal-escaped; ours have no specials).
		if f := strings.Fields(line); len(f) > 4 {
			if _, ok := want[f[4]]; ok {
				want[f[4]] = true
			}
		}
	}
	for p, ok := range want {
		if !ok {
			return fmt.Errorf("%s is not a private mount in this mount namespace", p)
		}
	}
	return nil
}

// mountRetry is mount(2), retried on EINTR.
func mountRetry(source, target, fstype string, flags uintptr, data string) error {
	for {
		err := syscall.Mount(source, target, fstype, flags, data)
		if err != syscall.EINTR {
			return err
		}
	}
}
