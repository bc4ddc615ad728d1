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
	"sync/atomic"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/control"
	"github.com/pxebootfs/pxebootfs/internal/testenv"

	pxfs "github.com/pxebootfs/pxebootfs/fs"
)

// TestTFTPServesRenderedConfigs fetches through a real tftpd-hpa with every
// client and option combination, and checks each against `pxebootfs render`
// and the size announced as tsize.
func TestTFTPServesRenderedConfigs(t *testing.T) {
	s := newSite(t, "allow = 192.168.0.0/16, 10.0.0.0/8\n")
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)

	names := []string{"C0A80102", "c0a80102", "0A000001", "01-52-54-00-12-34-56", "default"}
	for _, name := range names {
		want := s.render(name)
		if len(want) == 0 {
			t.Fatalf("render %s is empty", name)
		}
		t.Run(name, func(t *testing.T) {
			for _, opts := range []testenv.GetOptions{
				{}, {Tsize: true}, {Tsize: true, Blksize: 1428}, {Tsize: true, Blksize: 8}, {Blksize: 65464, Tsize: true},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				res, err := testenv.Get(ctx, addr, "pxelinux.cfg/"+name, opts)
				cancel()
				if err != nil {
					t.Fatalf("Get %+v: %v", opts, err)
				}
				if !bytes.Equal(res.Data, want) {
					t.Errorf("Get %+v: got %q, want %q", opts, res.Data, want)
				}
				if opts.Tsize && res.Tsize != int64(len(want)) {
					t.Errorf("Get %+v: tsize %d, want %d (exact size is what pxelinux relies on)", opts, res.Tsize, len(want))
				}
			}
			got, err := testenv.CurlGet(t, addr, "pxelinux.cfg/"+name, 1428)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("curl: %q, %v", got, err)
			}
			got, err = testenv.TFTPHPAGet(t, addr, "pxelinux.cfg/"+name)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("tftp-hpa: %q, %v", got, err)
			}
		})
	}
	if want := s.render("C0A80102"); !bytes.Contains(want, []byte("mac=52:54:00:12:34:56")) || bytes.Count(want, []byte("C0A80102")) != 4 {
		t.Errorf("render C0A80102 = %q: want the ethers MAC and four node occurrences", want)
	}
}

// TestTFTPNotFound checks that every name pxelinux probes and we do not
// serve is "file not found" to the client, so it falls through.
func TestTFTPNotFound(t *testing.T) {
	s := newSite(t, "allow = 192.168.0.0/16\n")
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	for _, name := range []string{
		"b8945908-d6a6-41a9-611d-74a6ab80b83d", // UUID
		"01-52-54-00-12-34-57",                 // MAC not in ethers, no static file
		"01-52-54-00-12-34-56x",
		"C0A8010", "C0A801", "C0", // hex prefixes
		"0A000001", // outside allow
		"7F000001", // loopback is outside allow
		"..%2f..%2fetc%2fpasswd",
		"nothing",
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := testenv.Get(ctx, addr, "pxelinux.cfg/"+name, testenv.GetOptions{Tsize: true})
			var te *testenv.TFTPError
			if !errors.As(err, &te) || te.Code != 1 {
				t.Errorf("Get %s: %v, want TFTP error 1 (file not found)", name, err)
			}
		})
	}
	if _, errOut, code := run(t, "render", "-c", s.cfg, "C0A8010"); code != 1 || strings.Count(errOut, "\n") != 0 || errOut == "" {
		t.Errorf("render of a name not served: exit %d, stderr %q; want 1 and one line", code, errOut)
	}
}

// TestTemplateChangeServed edits the template under a running daemon and
// waits until TFTP serves the new content with its exact size.
func TestTemplateChangeServed(t *testing.T) {
	s := newSite(t, "")
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	get := func() testenv.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := testenv.Get(ctx, addr, "pxelinux.cfg/C0A80102", testenv.GetOptions{Tsize: true})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	get()
	newContent := "DEFAULT changed\n# <NODE> <NODE> <NODE> <NODE>\n"
	want := "DEFAULT changed\n# C0A80102 C0A80102 C0A80102 C0A80102\n"
	changed := time.Now()
	s.write(s.template, newContent)
	for {
		res := get()
		if string(res.Data) == want {
			if res.Tsize != int64(len(want)) {
				t.Errorf("tsize %d, want %d", res.Tsize, len(want))
			}
			t.Logf("new template served %v after the change", time.Since(changed).Round(time.Millisecond))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A broken template keeps the old one serving.
	s.write(s.template, "{{.Node")
	time.Sleep(1500 * time.Millisecond)
	if res := get(); string(res.Data) != want {
		t.Errorf("after a broken template: %q, want the previous content", res.Data)
	}
}

// TestConcurrentTFTPClients runs 64 clients at once through tftpd-hpa.
func TestConcurrentTFTPClients(t *testing.T) {
	s := newSite(t, "")
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	want := s.render("C0A80102")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := testenv.Get(ctx, addr, "pxelinux.cfg/C0A80102", testenv.GetOptions{Tsize: true, Blksize: 1428})
			if err == nil && (!bytes.Equal(res.Data, want) || res.Tsize != int64(len(want))) {
				err = errors.New("wrong content or tsize")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestSIGTERMUnmounts checks the real binary unmounts and exits 0.
func TestSIGTERMUnmounts(t *testing.T) {
	s := newSite(t, "")
	d := s.start()
	if _, err := os.ReadFile(filepath.Join(s.mnt, "C0A80102")); err != nil {
		t.Fatal(err)
	}
	// Hold a file open: shutdown must still complete (lazily).
	f, err := os.Open(filepath.Join(s.mnt, "default"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := d.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, d.stderr.String())
	}
	if mounted(s.mnt) {
		t.Fatal("still mounted after SIGTERM")
	}
	if !strings.Contains(d.stderr.String(), "unmounted") {
		t.Errorf("no unmount log line:\n%s", d.stderr.String())
	}
}

// TestRestartOverDeadMount kills the daemon with -9, leaving a dead mount,
// and checks a new daemon clears it and serves.
func TestRestartOverDeadMount(t *testing.T) {
	s := newSite(t, "")
	d := s.start()
	// Not before the mount is fully up: see TestGRUBMountRestartOverDeadMount.
	d.waitLog(t, "msg=serving")
	d.cmd.Process.Kill()
	<-d.done
	if !pxfs.Dead(s.mnt) {
		t.Fatal("expected a dead mount after kill -9")
	}
	s.start()
	if b, err := os.ReadFile(filepath.Join(s.mnt, "C0A80102")); err != nil || len(b) == 0 {
		t.Fatalf("after restart: %q, %v", b, err)
	}
}

// TestTemplateChangeUnderLoad: 16 tftpd-hpa clients fetch node configs, by
// hex IP and by 01-<mac>, while the template changes 200 times and ethers
// moves the MAC between two nodes every 10th change, each change applied
// with `pxebootfs reload`. Every fetch is exactly one version: its bytes
// are one render and its tsize is their length, as a plain tftpd serving
// files replaced by rename gives; and a fetch started after a reload
// returned gets that version or a later one, never an earlier one.
func TestTemplateChangeUnderLoad(t *testing.T) {
	s := newSite(t, "allow = 10.0.0.0/8\n")
	const nodes = 32
	changes := 200
	if n, err := strconv.Atoi(os.Getenv("PXEBOOTFS_TEST_CHANGES")); err == nil {
		changes = n
	}
	ethers := filepath.Join(s.dir, "ethers")
	version := func(v int) {
		// Lengths differ between versions, so a tsize of one version
		// with the bytes of another cannot pass unnoticed.
		s.write(s.template+".new", fmt.Sprintf("V%d <NODE>%s\n", v, strings.Repeat(" pad", v%3*10)))
		if err := os.Rename(s.template+".new", s.template); err != nil {
			t.Fatal(err)
		}
		_, a := hexNode(1 + v/10%2)
		s.write(ethers+".new", "52:54:00:00:00:aa "+a.String()+"\n")
		if err := os.Rename(ethers+".new", ethers); err != nil {
			t.Fatal(err)
		}
	}
	version(0)
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	// parse checks one fetch: "V<n> <NODE><pad>\n" of one version n, for the
	// node the name stands for in that version; it returns n.
	parse := func(name string, b []byte) (int, error) {
		var v int
		var node string
		if _, err := fmt.Sscanf(string(b), "V%d %8s", &v, &node); err != nil {
			return 0, fmt.Errorf("%s: %q is no version", name, b)
		}
		want := name
		if name == "01-52-54-00-00-00-aa" {
			// The daemon's own file watch may load the new template a
			// moment before the new ethers (two files, two renames):
			// at a change of owner, either owner is one render.
			want = node
			if a, _ := hexNode(1 + v/10%2); node != a {
				if b, _ := hexNode(1 + (v-1)/10%2); node != b || v%10 != 0 {
					return 0, fmt.Errorf("%s: version %d names node %s", name, v, node)
				}
			}
		}
		if exp := fmt.Sprintf("V%d %s%s\n", v, want, strings.Repeat(" pad", v%3*10)); string(b) != exp {
			return 0, fmt.Errorf("%s: %q is not version %d, %q", name, b, v, exp)
		}
		return v, nil
	}
	var fetches, bad atomic.Int64
	var current atomic.Int64 // the last version whose reload returned
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for c := range 16 {
		wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				name, _ := hexNode(1 + (c*7+j)%nodes)
				if j%4 == 0 {
					name = "01-52-54-00-00-00-aa"
				}
				floor := current.Load()
				b, err := fetch(t, addr, name)
				fetches.Add(1)
				var v int
				if err == nil {
					v, err = parse(name, b)
				}
				if err == nil && int64(v) < floor {
					err = fmt.Errorf("%s: version %d fetched after version %d was reloaded", name, v, floor)
				}
				if err != nil {
					bad.Add(1)
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond) // every node warm and cached
	// What `pxebootfs reload` asks, without starting a process per
	// change (on two busy cores that took 2 s each).
	ctl := control.NewClient(control.SocketPath(filepath.Join(filepath.Dir(s.dir), "state")))
	var slowest time.Duration
	begin := time.Now()
	for v := 1; v <= changes; v++ {
		version(v)
		start := time.Now()
		if err := ctl.Reload(t.Context()); err != nil {
			t.Fatalf("reload %d: %v", v, err)
		}
		slowest = max(slowest, time.Since(start))
		current.Store(int64(v))
	}
	t.Logf("%d reloads in %v, the slowest %v", changes, time.Since(begin), slowest)
	time.Sleep(500 * time.Millisecond) // the load goes on over the last version
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d fetches through %d changes, %d not exactly one version (or older than the last reload)", fetches.Load(), changes, bad.Load())
	for i := 1; i <= nodes; i++ {
		name, _ := hexNode(i)
		if b, err := fetch(t, addr, name); err != nil || string(b) != fmt.Sprintf("V%d %s%s\n", changes, name, strings.Repeat(" pad", changes%3*10)) {
			t.Errorf("after the load, %s: %q, %v", name, b, err)
		}
	}
}
