package generator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// script writes an executable POSIX sh program into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func newRunner(t *testing.T, o Options) *Runner {
	t.Helper()
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func req(name string) Request { return Request{Name: name, File: "/srv/tftp/pxelinux.cfg/" + name} }

func TestRun(t *testing.T) {
	dir := t.TempDir()
	big := 3<<20 + 17
	tests := []struct {
		name    string
		body    string
		req     Request
		maxSize int64
		want    string // exact content; "" when wantErr is set
		check   func(t *testing.T, data []byte)
		wantErr error
		errText string // substring of the error
	}{
		{name: "ok", body: `printf 'hello %s\n' "$2" >&3`, req: req("maclist"),
			want: "hello /srv/tftp/pxelinux.cfg/maclist\n"},
		{name: "args", body: `for a; do printf '%s\n' "$a"; done >&3`,
			req:  Request{Name: "C0A80102", File: "/mnt/C0A80102", IP: "192.168.1.2", MAC: "52:54:00:12:34:56", Node: "C0A80102"},
			want: "--file\n/mnt/C0A80102\n--ip\n192.168.1.2\n--mac\n52:54:00:12:34:56\n--node\nC0A80102\n"},
		{name: "shell metacharacters stay one argument", body: `printf '%s|' "$@" >&3`, req: req("$(touch pwned);x"),
			want: "--file|/srv/tftp/pxelinux.cfg/$(touch pwned);x|"},
		{name: "minimal environment", body: `env | grep -v '^PWD=' | sort >&3`, req: req("x"),
			want: "LANG=C\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n"},
		{name: "stdin is /dev/null, cwd is /", body: `readlink /proc/self/fd/0 >&3; pwd >&3`, req: req("x"),
			want: "/dev/null\n/\n"},
		{name: "only fds 0-3 are open", body: `ls /proc/self/fd | sort -n | tr '\n' ' ' >&3`, req: req("x"),
			// ls itself opens one more to read the directory.
			check: func(t *testing.T, data []byte) {
				if got := strings.Fields(string(data)); !slices.Equal(got[:4], []string{"0", "1", "2", "3"}) || len(got) > 5 {
					t.Errorf("open fds %q, want 0 1 2 3 (and ls's own)", data)
				}
			}},
		{name: "reopening /dev/fd/3 works", body: `echo reopened > /dev/fd/3`, req: req("x"), want: "reopened\n"},
		{name: "more than 1 MiB", body: fmt.Sprintf(`head -c %d /dev/zero | tr '\0' x >&3`, big), req: req("big"),
			check: func(t *testing.T, data []byte) {
				if len(data) != big || bytes.Count(data, []byte("x")) != big {
					t.Errorf("got %d bytes, want %d x's", len(data), big)
				}
			}},
		{name: "non-zero exit", body: "echo partial >&3; echo 'no such host' >&2; exit 3", req: req("x"),
			wantErr: ErrDeclined, errText: "no such host"},
		{name: "zero bytes", body: "exit 0", req: req("x"), wantErr: ErrEmpty},
		{name: "over the size limit at exit", body: "head -c 5000 /dev/zero >&3", req: req("x"), maxSize: 1000, wantErr: ErrTooLarge},
		{name: "runaway writer is stopped", body: "yes >&3", req: req("x"), maxSize: 1 << 20, wantErr: ErrTooLarge},
		{name: "hostile name never runs", body: "touch " + filepath.Join(dir, "ran") + "; echo x >&3", req: req("../etc/passwd"), wantErr: ErrBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog := script(t, t.TempDir(), "gen", tt.body)
			r := newRunner(t, Options{Program: prog, Timeout: time.Minute, MaxSize: tt.maxSize})
			res, err := r.Get(context.Background(), tt.req, 0)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("err = %v, want %v (and fs.ErrNotExist)", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("err = %v, want it to contain %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, res.Data)
			} else if string(res.Data) != tt.want {
				t.Errorf("data = %q, want %q", res.Data, tt.want)
			}
			if res.Request != tt.req || res.Seq == 0 || res.Time.IsZero() {
				t.Errorf("result = %+v", res)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("the program ran for a hostile name")
	}
	assertNoChildren(t)
}

// assertNoChildren fails if this process has any child left, zombie or
// not: every run must be reaped.
func assertNoChildren(t *testing.T) {
	t.Helper()
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			t.Errorf("child processes left: %s", s)
		}
	}
}

// processesWith lists pids whose command line contains marker.
func processesWith(marker string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(marker)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// TestTimeoutKillsGroup runs a program that starts a helper and hangs: at
// the timeout both die, nothing is left unreaped, and it is ENOENT.
func TestTimeoutKillsGroup(t *testing.T) {
	marker := fmt.Sprintf("pxebootfs-test-marker-%d-%d", os.Getpid(), time.Now().UnixNano())
	prog := script(t, t.TempDir(), "hang", fmt.Sprintf(`echo started >&3
echo 'about to hang' >&2
sh -c 'sleep 300' %[1]s-helper &
exec sh -c 'sleep 300' %[1]s-leader
`, marker))
	r := newRunner(t, Options{Program: prog, Timeout: 300 * time.Millisecond})
	_, err := r.Get(context.Background(), req("x"), 0)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "about to hang") {
		t.Errorf("error lacks the program's stderr: %v", err)
	}
	assertNoChildren(t)
	// SIGKILL is delivered at once, but the orphaned helper is reaped by
	// init; a zombie has an empty cmdline, so this waits only for death.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := processesWith(marker)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the killed program still alive: %v", pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSuccessKillsLeftovers: a program that exits 0 but leaves a
// background process in its group does not leave it running.
func TestSuccessKillsLeftovers(t *testing.T) {
	marker := fmt.Sprintf("pxebootfs-test-leftover-%d-%d", os.Getpid(), time.Now().UnixNano())
	prog := script(t, t.TempDir(), "bg", fmt.Sprintf(`sh -c 'sleep 300' %s </dev/null >/dev/null 2>&1 &
echo done >&3
`, marker))
	r := newRunner(t, Options{Program: prog, Timeout: time.Minute})
	res, err := r.Get(context.Background(), req("x"), 0)
	if err != nil || string(res.Data) != "done\n" {
		t.Fatalf("Get = %v, %v", res, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(processesWith(marker)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("background process of a finished program still alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
	assertNoChildren(t)
}

func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "notexec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\necho x >&3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, prog := range []string{filepath.Join(dir, "missing"), notExec} {
		t.Run(filepath.Base(prog), func(t *testing.T) {
			r := newRunner(t, Options{Program: prog})
			_, err := r.Get(context.Background(), req("x"), 0)
			if !errors.Is(err, ErrStart) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), prog) {
				t.Errorf("err = %v, want ErrStart naming the program", err)
			}
		})
	}
	if _, err := New(Options{Program: "relative/gen"}); err == nil {
		t.Error("New accepted a relative program path")
	}
}

// TestHostileRequests never reach the program.
func TestHostileRequests(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	prog := script(t, dir, "gen", "echo \"$@\" >> "+ran+"; echo x >&3\n")
	r := newRunner(t, Options{Program: prog})
	long := strings.Repeat("a", 256)
	for _, q := range []Request{
		req(""), req("."), req(".."), req("../x"), {Name: "a/b", File: "/m/a/b"}, req("x\x00y"), req("é"),
		req("tab\there"), req("nl\n"), req(long),
		{Name: "x", File: "relative/x"},                             // --file not absolute
		{Name: "x", File: "/m/y"},                                   // --file for another name
		{Name: "x", File: "/m/x", IP: "1.2.3.4\n--evil"},            // control character in an argument
		{Name: "x", File: "/m/x", MAC: "aa/bb"},                     // slash in an argument
		{Name: "-x", File: "/m/-x", Node: strings.Repeat("N", 300)}, // overlong argument
	} {
		t.Run(strconv.Quote(q.Name), func(t *testing.T) {
			_, err := r.Get(context.Background(), q, 0)
			if !errors.Is(err, ErrBadName) || !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("err = %v, want ErrBadName", err)
			}
		})
	}
	if b, err := os.ReadFile(ran); err == nil {
		t.Errorf("the program ran for hostile requests: %q", b)
	}
}

// countRuns is a program that appends one line per run to dir/runs and
// prints the name it was asked for; status "fail" makes it exit 1.
func countRuns(t *testing.T, dir string) (prog string, runs func() int) {
	t.Helper()
	log := filepath.Join(dir, "runs")
	prog = script(t, dir, "count", `echo run >> `+log+`
case "$2" in */fail) exit 1;; esac
printf '%s\n' "$2" >&3
`)
	return prog, func() int {
		b, _ := os.ReadFile(log)
		return bytes.Count(b, []byte("\n"))
	}
}

func TestCache(t *testing.T) {
	clock := testenv.NewClock(time.Unix(1e9, 0))
	prog, runs := countRuns(t, t.TempDir())
	r := newRunner(t, Options{Program: prog, TTL: 10 * time.Second, NegativeTTL: time.Second, Now: clock.Now})
	ctx := context.Background()
	steps := []struct {
		name     string
		advance  time.Duration
		req      string
		minLeft  time.Duration
		wantRuns int
		wantErr  bool
	}{
		{name: "first run", req: "a", wantRuns: 1},
		{name: "cached", advance: 5 * time.Second, req: "a", wantRuns: 1},
		{name: "cached but too close to expiry for an open", advance: 4500 * time.Millisecond, req: "a", minLeft: time.Second, wantRuns: 2},
		{name: "fresh again", req: "a", minLeft: time.Second, wantRuns: 2},
		{name: "expired", advance: 11 * time.Second, req: "a", wantRuns: 3},
		{name: "another name", req: "b", wantRuns: 4},
		{name: "failure", req: "fail", wantRuns: 5, wantErr: true},
		{name: "failure cached", advance: 500 * time.Millisecond, req: "fail", wantRuns: 5, wantErr: true},
		{name: "failure cached even for an open", req: "fail", minLeft: time.Second, wantRuns: 5, wantErr: true},
		{name: "failure expires after NegativeTTL", advance: 600 * time.Millisecond, req: "fail", wantRuns: 6, wantErr: true},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		res, err := r.Get(ctx, req(s.req), s.minLeft)
		if (err != nil) != s.wantErr {
			t.Fatalf("%s: err = %v", s.name, err)
		}
		if err == nil && string(res.Data) != req(s.req).File+"\n" {
			t.Errorf("%s: data %q", s.name, res.Data)
		}
		if got := runs(); got != s.wantRuns {
			t.Errorf("%s: %d runs, want %d", s.name, got, s.wantRuns)
		}
	}
	r.Forget()
	if _, err := r.Get(ctx, req("b"), 0); err != nil || runs() != 7 {
		t.Errorf("after Forget: err %v, %d runs, want 7", err, runs())
	}
}

// TestSingleFlight: concurrent lookups of one name run the program once
// and all get the same result.
func TestSingleFlight(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "runs")
	prog := script(t, dir, "slow", "echo run >> "+log+"; sleep 0.3; echo content >&3\n")
	r := newRunner(t, Options{Program: prog, Timeout: time.Minute})
	var wg sync.WaitGroup
	results := make([]*Result, 50)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := r.Get(context.Background(), req("one"), 0)
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	b, _ := os.ReadFile(log)
	if n := bytes.Count(b, []byte("\n")); n != 1 {
		t.Errorf("program ran %d times, want 1", n)
	}
	for _, res := range results {
		if res != results[0] {
			t.Fatal("callers got different results")
		}
	}
}

// TestConcurrencyBound runs 200 different names at once with a bound of 8:
// each run records how many runs were in progress when it started.
func TestConcurrencyBound(t *testing.T) {
	const limit = 8
	dir := t.TempDir()
	running := filepath.Join(dir, "running")
	if err := os.Mkdir(running, 0o755); err != nil {
		t.Fatal(err)
	}
	counts := filepath.Join(dir, "counts")
	prog := script(t, dir, "gen", fmt.Sprintf(`me=%[1]s/run.$$
mkdir "$me"
ls %[1]s | wc -l >> %[2]s
sleep 0.05
rmdir "$me"
echo ok >&3
`, running, counts))
	r := newRunner(t, Options{Program: prog, Concurrency: limit, Timeout: 2 * time.Minute})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Get(context.Background(), req(fmt.Sprintf("n%03d", i)), 0); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	b, err := os.ReadFile(counts)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b))
	if len(fields) != 200 {
		t.Fatalf("%d runs recorded, want 200", len(fields))
	}
	most := 0
	for _, f := range fields {
		n, _ := strconv.Atoi(f)
		most = max(most, n)
	}
	if most > limit {
		t.Errorf("%d programs ran at once, limit %d", most, limit)
	}
	t.Logf("most programs running at once: %d (limit %d)", most, limit)
	assertNoChildren(t)
}

// TestBusy: with every slot taken, a request gives up after the timeout.
func TestBusy(t *testing.T) {
	prog, runs := countRuns(t, t.TempDir())
	r := newRunner(t, Options{Program: prog, Concurrency: 1, Timeout: 100 * time.Millisecond})
	r.sem <- struct{}{} // a run that never ends
	_, err := r.Get(context.Background(), req("x"), 0)
	if !errors.Is(err, ErrBusy) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want ErrBusy", err)
	}
	<-r.sem
	if runs() != 0 {
		t.Error("the program ran without a slot")
	}
}

// TestCallerCancel: a caller that gives up gets its context's error; the
// run continues for the others and is cached.
func TestCallerCancel(t *testing.T) {
	dir := t.TempDir()
	prog := script(t, dir, "slow", "sleep 0.3; echo late >&3\n")
	r := newRunner(t, Options{Program: prog, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Get(ctx, req("x"), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	res, err := r.Get(context.Background(), req("x"), 0)
	if err != nil || string(res.Data) != "late\n" {
		t.Errorf("Get = %v, %v", res, err)
	}
}

func TestCacheBound(t *testing.T) {
	clock := testenv.NewClock(time.Unix(1e9, 0))
	dir := t.TempDir()
	prog := script(t, dir, "gen", "head -c 1000 /dev/zero >&3\n")
	r := newRunner(t, Options{Program: prog, MaxCache: 2500, Now: clock.Now})
	for i := range 5 {
		clock.Advance(time.Millisecond)
		if _, err := r.Get(context.Background(), req(fmt.Sprintf("n%d", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bytes > 2500 || len(r.cache) != 2 {
		t.Errorf("cache holds %d bytes in %d entries, want at most 2500 in 2", r.bytes, len(r.cache))
	}
	if _, ok := r.cache[req("n4").key()]; !ok {
		t.Error("the newest result was evicted")
	}
}

// TestSampleMaclist runs the shipped sample generator.
func TestSampleMaclist(t *testing.T) {
	prog, err := filepath.Abs("../../testdata/generators/maclist.sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatal("no sh: the sample generator is a shell script")
	}
	r := newRunner(t, Options{Program: prog})
	res, err := r.Get(context.Background(), Request{Name: "maclist", File: "/srv/tftp/maclist", IP: "10.0.0.9", MAC: "52:54:00:00:00:09"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../testdata/generators/maclist.golden")
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Data) != string(want) {
		t.Errorf("maclist = %q, want %q", res.Data, want)
	}
	for _, name := range []string{"default", "C0A80102", "01-52-54-00-12-34-56"} {
		if _, err := r.Get(context.Background(), req(name), 0); !errors.Is(err, ErrDeclined) {
			t.Errorf("%s: err = %v, want ErrDeclined", name, err)
		}
	}
}
