package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// TestTemplateChangeUnderLoad: the kernel caches warm configs; a template
// changes while 16 clients keep fetching through tftpd-hpa. Under the load,
// a fetch may pair the old and the new version (its open or reads overlap
// the change; the same happens without any caching, and on a plain tftpd
// whose file is replaced): those are counted. Once the load stops, every
// node's fetch has the new content and an exact tsize: no stale size or
// page is left behind in the kernel.
func TestTemplateChangeUnderLoad(t *testing.T) {
	s := newSite(t, "allow = 10.0.0.0/8\n")
	s.write(s.template, "OLD <NODE>\n")
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	const nodes = 32
	want := func(prefix string, i int) string {
		name, _ := hexNode(i)
		return prefix + " " + name + "\n"
	}
	var mixed, fetches atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for c := range 16 {
		wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				i := 1 + (c*7+j)%nodes
				name, _ := hexNode(i)
				b, err := fetch(t, addr, name)
				fetches.Add(1)
				switch {
				case err != nil && strings.Contains(err.Error(), "tsize"):
					mixed.Add(1)
				case err != nil:
					errs <- err
					return
				case string(b) == want("NEW, LONGER", i), string(b) == want("OLD", i):
				default:
					mixed.Add(1)
				}
			}
		})
	}
	time.Sleep(time.Second) // every node warm and cached
	s.write(s.template, "NEW, LONGER <NODE>\n")
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := fetch(t, addr, "0A010001")
		if err == nil && string(b) == want("NEW, LONGER", 1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new template not served after 30 s: %q, %v", b, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the load goes on over the new version
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d fetches under load, %d paired two versions", fetches.Load(), mixed.Load())
	for round := range 2 {
		for i := 1; i <= nodes; i++ {
			name, _ := hexNode(i)
			if b, err := fetch(t, addr, name); err != nil || string(b) != want("NEW, LONGER", i) {
				t.Errorf("round %d after the load, %s: %q, %v", round, name, b, err)
			}
		}
	}
}
