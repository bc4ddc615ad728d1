package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// writeGenerator installs an executable POSIX sh content generator in the
// site's config dir and returns its path.
func (s *site) writeGenerator(name, body string) string {
	s.t.Helper()
	p := filepath.Join(s.dir, name)
	s.write(p, "#!/bin/sh\n"+body)
	if err := os.Chmod(p, 0o755); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// getTFTP fetches through the site's tftpd with tsize and checks it.
func getExactTFTP(t *testing.T, addr, name string, opts testenv.GetOptions) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts.Tsize = true
	res, err := testenv.Get(ctx, addr, "pxelinux.cfg/"+name, opts)
	if err == nil && res.Tsize != int64(len(res.Data)) {
		err = fmt.Errorf("%s: tsize %d but %d bytes: pxelinux would reject it", name, res.Tsize, len(res.Data))
	}
	return res.Data, err
}

func isTFTPFileNotFound(err error) bool {
	var te *testenv.TFTPError
	return errors.As(err, &te) && te.Code == 1
}

// TestGeneratorSampleMaclist serves the shipped sample generator through
// tftpd-hpa, unchanged from its atftpd form.
func TestGeneratorSampleMaclist(t *testing.T) {
	sample, err := filepath.Abs("../../testdata/generators/maclist.sh")
	if err != nil {
		t.Fatal(err)
	}
	s := newSite(t, "content_generator = "+sample+"\n")
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	want := s.render("maclist")
	if !bytes.Contains(want, []byte("wl mac 52:54:00:aa:00:01 52:54:00:aa:00:03 52:54:00:aa:00:04 00:00:00:00:00:00\n")) {
		t.Fatalf("render maclist = %q", want)
	}
	for _, opts := range []testenv.GetOptions{{}, {Blksize: 1428}, {Blksize: 8}} {
		got, err := getExactTFTP(t, addr, "maclist", opts)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("TFTP %+v: %q, %v; want %q", opts, got, err, want)
		}
	}
	if got, err := testenv.TFTPHPAGet(t, addr, "pxelinux.cfg/maclist"); err != nil || !bytes.Equal(got, want) {
		t.Errorf("tftp-hpa: %q, %v", got, err)
	}
	// It refuses everything else: pxelinux's probes fall through.
	for _, name := range []string{"b8945908-d6a6-41a9-611d-74a6ab80b83d", "C0A8010", "01-52-54-00-12-34-57", "maclist2"} {
		if _, err := getExactTFTP(t, addr, name, testenv.GetOptions{}); !isTFTPFileNotFound(err) {
			t.Errorf("%s: %v, want file not found", name, err)
		}
	}
	// Node names and static files are not the generator's.
	if got, err := getExactTFTP(t, addr, "C0A80102", testenv.GetOptions{}); err != nil || !bytes.Equal(got, s.render("C0A80102")) {
		t.Errorf("node config: %q, %v", got, err)
	}
	if got, err := getExactTFTP(t, addr, "default", testenv.GetOptions{}); err != nil || !bytes.HasPrefix(got, []byte("DEFAULT local")) {
		t.Errorf("static default: %q, %v", got, err)
	}
}

// daemonChildPIDs lists the daemon's child processes, zombies included.
func daemonChildPIDs(d *daemon) string {
	var out []string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", d.cmd.Process.Pid))
	for _, f := range tasks {
		if b, err := os.ReadFile(f); err == nil {
			out = append(out, strings.Fields(string(b))...)
		}
	}
	return strings.Join(out, " ")
}

// procsWithMarker lists pids whose command line contains marker.
func procsWithMarker(marker string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(b, []byte(marker)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// TestGeneratorResults covers each outcome of a run through the mount and
// tftpd-hpa: content, non-zero exit, zero bytes, timeout, more than 1 MiB.
func TestGeneratorResults(t *testing.T) {
	marker := fmt.Sprintf("pxebootfs-e2e-hang-%d-%d", os.Getpid(), time.Now().UnixNano())
	s := newSite(t, "content_generator = gen\ngenerator_timeout = 1s\n")
	runs := filepath.Join(s.dir, "runs")
	s.writeGenerator("gen", fmt.Sprintf(`echo "$*" >> '%s'
case ${2##*/} in
ok-*) printf 'ok %%s\n' "$*" >&3 ;;
fail) echo partial >&3; echo 'database is down' >&2; exit 3 ;;
empty) exit 0 ;;
slow) echo started >&3; sh -c 'sleep 300' %[2]s-helper & exec sh -c 'sleep 300' %[2]s-leader ;;
big) seq 1 200000 >&3 ;;
*) exit 1 ;;
esac
`, runs, marker))
	d := s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)

	t.Run("content", func(t *testing.T) {
		want := "ok --file " + filepath.Join(s.mnt, "ok-1") + "\n"
		got, err := getExactTFTP(t, addr, "ok-1", testenv.GetOptions{})
		if err != nil || string(got) != want {
			t.Errorf("ok-1: %q, %v; want %q", got, err, want)
		}
		// The lookup, fstat and read of that fetch, and this read, ran it once.
		if b, err := os.ReadFile(filepath.Join(s.mnt, "ok-1")); err != nil || string(b) != want {
			t.Errorf("read through the mount: %q, %v", b, err)
		}
		if n := strings.Count(readFileOrEmpty(t, runs), "/ok-1\n"); n != 1 {
			t.Errorf("ok-1 ran %d times, want 1 (cached for generator_ttl)", n)
		}
	})
	t.Run("non-zero exit", func(t *testing.T) {
		if _, err := getExactTFTP(t, addr, "fail", testenv.GetOptions{}); !isTFTPFileNotFound(err) {
			t.Errorf("fail: %v, want file not found", err)
		}
		d.waitLog(t, "database is down")
	})
	t.Run("zero bytes", func(t *testing.T) {
		if _, err := getExactTFTP(t, addr, "empty", testenv.GetOptions{}); !isTFTPFileNotFound(err) {
			t.Errorf("empty: %v, want file not found", err)
		}
	})
	t.Run("more than 1 MiB", func(t *testing.T) {
		var want bytes.Buffer
		for i := 1; i <= 200000; i++ {
			fmt.Fprintf(&want, "%d\n", i)
		}
		if want.Len() <= 1<<20 {
			t.Fatalf("test data is only %d bytes", want.Len())
		}
		for _, opts := range []testenv.GetOptions{{Blksize: 1428}, {}} {
			got, err := getExactTFTP(t, addr, "big", opts)
			if err != nil || !bytes.Equal(got, want.Bytes()) {
				t.Errorf("big %+v: %d bytes, %v; want %d", opts, len(got), err, want.Len())
			}
		}
	})
	t.Run("timeout", func(t *testing.T) {
		_, err := os.Stat(filepath.Join(s.mnt, "slow"))
		if !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("stat slow: %v, want ENOENT", err)
		}
		d.waitLog(t, "generator killed")
		// The run is reaped before the lookup answers.
		if c := daemonChildPIDs(d); c != "" {
			t.Errorf("daemon has children left after the timeout: %s", c)
		}
		// Its whole process group was SIGKILLed; the orphaned helper is
		// reaped by init, so wait for death, not for a time.
		deadline := time.Now().Add(10 * time.Second)
		for len(procsWithMarker(marker)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("processes of the timed-out generator still alive: %v", procsWithMarker(marker))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func readFileOrEmpty(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// TestGeneratorConcurrencyBound: 200 parallel lookups of different names
// through the mount never run more than generator_concurrency programs.
func TestGeneratorConcurrencyBound(t *testing.T) {
	const limit = 8 // the default
	// Waits for a slot are bounded by generator_timeout: make it long
	// enough that all 200 get their turn on a slow machine.
	s := newSite(t, "content_generator = gen\ngenerator_timeout = 120s\n")
	running := filepath.Join(s.dir, "running")
	if err := os.Mkdir(running, 0o755); err != nil {
		t.Fatal(err)
	}
	counts := filepath.Join(s.dir, "counts")
	s.writeGenerator("gen", fmt.Sprintf(`me='%[1]s'/run.$$
mkdir "$me"
ls '%[1]s' | wc -l >> '%[2]s'
sleep 0.05
rmdir "$me"
echo "${2##*/}" >&3
`, running, counts))
	s.start()
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("n%03d", i)
			fi, err := os.Stat(filepath.Join(s.mnt, name))
			if err != nil {
				t.Error(err)
			} else if fi.Size() != int64(len(name)+1) {
				t.Errorf("%s: size %d, want %d", name, fi.Size(), len(name)+1)
			}
		}()
	}
	wg.Wait()
	fields := strings.Fields(readFileOrEmpty(t, counts))
	if len(fields) != 200 {
		t.Fatalf("%d runs recorded, want 200", len(fields))
	}
	most := 0
	for _, f := range fields {
		n, _ := strconv.Atoi(f)
		most = max(most, n)
	}
	if most > limit {
		t.Errorf("%d generators ran at once; generator_concurrency is %d", most, limit)
	}
	t.Logf("most generators running at once: %d (limit %d)", most, limit)
}

// TestGeneratorHostileNames: names that are not plain file names are "not
// found" through the mount and through tftpd-hpa, and never reach the
// program.
func TestGeneratorHostileNames(t *testing.T) {
	s := newSite(t, "content_generator = gen\n")
	runs := filepath.Join(s.dir, "runs")
	s.writeGenerator("gen", "echo \"$*\" >> '"+runs+"'\necho anything >&3\n")
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	hostile := []string{"\x01x", "tab\tx", "nl\nx", "del\x7f", "é", "\xff\xfe", "esc\x1b[2J"}
	for _, name := range hostile {
		if _, err := os.Stat(filepath.Join(s.mnt, name)); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("stat %q: %v, want ENOENT", name, err)
		}
		if _, err := getExactTFTP(t, addr, name, testenv.GetOptions{}); err == nil {
			t.Errorf("TFTP %q was served", name)
		}
	}
	if _, err := os.Stat(filepath.Join(s.mnt, strings.Repeat("x", 256))); err == nil {
		t.Error("an overlong name was served")
	}
	if got := readFileOrEmpty(t, runs); got != "" {
		t.Errorf("the program ran for hostile names:\n%s", got)
	}
	// A plain name does reach it, so the check above is not vacuous.
	if got, err := getExactTFTP(t, addr, "plain", testenv.GetOptions{}); err != nil || string(got) != "anything\n" {
		t.Errorf("plain: %q, %v", got, err)
	}
	if got := readFileOrEmpty(t, runs); got != "--file "+filepath.Join(s.mnt, "plain")+"\n" {
		t.Errorf("runs = %q", got)
	}
}

// TestGeneratorForNodes: with generator_for_nodes the program is asked for
// node names first, with --ip, --mac and --node; what it refuses is
// rendered from the template.
func TestGeneratorForNodes(t *testing.T) {
	s := newSite(t, "allow = 192.168.0.0/16\ncontent_generator = gen\ngenerator_for_nodes = true\n")
	s.writeGenerator("gen", `case ${2##*/} in
C0A80102) printf 'from the database: %s\n' "$*" >&3 ;;
*) exit 1 ;;
esac
`)
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	want := fmt.Sprintf("from the database: --file %s --ip 192.168.1.2 --mac 52:54:00:12:34:56 --node C0A80102\n", filepath.Join(s.mnt, "C0A80102"))
	if got, err := getExactTFTP(t, addr, "C0A80102", testenv.GetOptions{Blksize: 1428}); err != nil || string(got) != want {
		t.Errorf("C0A80102: %q, %v; want %q", got, err, want)
	}
	// render shows the same, with --file under its -mountpoint.
	out, errOut, code := run(t, "render", "-c", s.cfg, "-mountpoint", s.mnt, "C0A80102")
	if code != 0 || out != want {
		t.Errorf("render: exit %d, %q (%s); want %q", code, out, errOut, want)
	}
	// Refused: the template serves it.
	got, err := getExactTFTP(t, addr, "C0A80103", testenv.GetOptions{})
	if err != nil || !bytes.Contains(got, []byte("node=C0A80103")) {
		t.Errorf("C0A80103: %q, %v; want the template's config", got, err)
	}
	// Outside allow: never generated.
	if _, err := getExactTFTP(t, addr, "0A000001", testenv.GetOptions{}); !isTFTPFileNotFound(err) {
		t.Errorf("0A000001: %v, want file not found", err)
	}
}

// TestGeneratorRenderRefusal: `pxebootfs render` of a name the program
// refuses exits 1 with one line naming the reason.
func TestGeneratorRenderRefusal(t *testing.T) {
	s := newSite(t, "content_generator = gen\n")
	s.writeGenerator("gen", "echo 'no such host in the database' >&2\nexit 1\n")
	_, errOut, code := run(t, "render", "-c", s.cfg, "whatever")
	if code != 1 || strings.Count(errOut, "\n") != 0 || !strings.Contains(errOut, "no such host in the database") {
		t.Errorf("render: exit %d, stderr %q; want 1 and one line with the program's stderr", code, errOut)
	}
}
