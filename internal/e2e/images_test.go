package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

const imageTemplate = "DEFAULT linux\nLABEL linux\n  KERNEL {{image \"deb\" \"vmlinuz\"}}\n  APPEND initrd={{image \"deb\" \"initrd.img\"}} ip=<NODE>\n"

// bootFile makes the content of one boot file of generation gen: a header
// naming the generation and length, random bytes, and the sha256 of all
// that, so a reader can tell a complete file from a truncated or mixed one.
func bootFile(kind string, gen, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s GEN=%d LEN=%d\n", kind, gen, size)
	pad := make([]byte, size)
	rand.Read(pad)
	b.WriteString(hex.EncodeToString(pad)[:size])
	h := sha256.Sum256(b.Bytes())
	b.WriteString("\n" + hex.EncodeToString(h[:]) + "\n")
	return b.Bytes()
}

var bootHeader = regexp.MustCompile(`^(\w+) GEN=(\d+) LEN=(\d+)\n`)

// checkBootFile returns the generation of a complete, intact boot file.
func checkBootFile(kind string, data []byte) (int, error) {
	m := bootHeader.FindSubmatch(data)
	if m == nil || string(m[1]) != kind {
		return 0, fmt.Errorf("%s: no header in %d bytes", kind, len(data))
	}
	i := bytes.LastIndexByte(bytes.TrimSuffix(data, []byte("\n")), '\n')
	if i < 0 {
		return 0, fmt.Errorf("%s: truncated", kind)
	}
	h := sha256.Sum256(data[:i])
	if got := string(bytes.TrimSpace(data[i+1:])); got != hex.EncodeToString(h[:]) {
		return 0, fmt.Errorf("%s: %d bytes do not match their checksum (truncated or mixed)", kind, len(data))
	}
	gen, _ := strconv.Atoi(string(m[2]))
	return gen, nil
}

var (
	kernelLine = regexp.MustCompile(`KERNEL (\S+)`)
	initrdLine = regexp.MustCompile(`initrd=(\S+)`)
)

// boot does what a node does: fetch its config, then the kernel and initrd
// the config names (or, naive, fixed paths); it checks both files are
// complete and of one generation, which it returns.
func boot(ctx context.Context, addr, node string, naive bool) (gen int, err error) {
	kernel, initrd := "naive/vmlinuz", "naive/initrd.img"
	if !naive {
		res, err := testenv.Get(ctx, addr, "pxelinux.cfg/"+node, testenv.GetOptions{Tsize: true})
		if err != nil {
			return 0, err
		}
		k, i := kernelLine.FindSubmatch(res.Data), initrdLine.FindSubmatch(res.Data)
		if k == nil || i == nil {
			return 0, fmt.Errorf("config without kernel or initrd: %q", res.Data)
		}
		kernel, initrd = string(k[1]), string(i[1])
	}
	var gens [2]int
	for j, f := range []struct{ kind, path string }{{"K", kernel}, {"I", initrd}} {
		res, err := testenv.Get(ctx, addr, f.path, testenv.GetOptions{Tsize: true, Blksize: 1428})
		if err != nil {
			return 0, err
		}
		if gens[j], err = checkBootFile(f.kind, res.Data); err != nil {
			return 0, fmt.Errorf("%s: %w", f.path, err)
		}
	}
	if gens[0] != gens[1] {
		return 0, fmt.Errorf("mismatched pair: kernel of generation %d, initrd of generation %d", gens[0], gens[1])
	}
	return gens[0], nil
}

// bootLoop runs 32 clients booting until at least n boots are done and
// returns the boots and the failures by kind.
func bootLoop(t *testing.T, addr string, n int, naive bool, seen *sync.Map) (boots int64, mismatched, broken int64) {
	var done, mis, bad atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for c := range 32 {
		wg.Go(func() {
			node := fmt.Sprintf("C0A801%02X", 10+c)
			for done.Load() < int64(n) && ctx.Err() == nil {
				gen, err := boot(ctx, addr, node, naive)
				if err == nil && seen != nil {
					seen.Store(gen, true)
				}
				done.Add(1)
				switch {
				case err == nil:
				case strings.Contains(err.Error(), "mismatched"):
					mis.Add(1)
				default:
					bad.Add(1)
					if !naive {
						t.Logf("boot of %s: %v", node, err)
					}
				}
			}
		})
	}
	wg.Wait()
	return done.Load(), mis.Load(), bad.Load()
}

// TestImagesRace is the race of seeds 002/003 end to end through
// tftpd-hpa: one goroutine imports a new version of an image every ~100 ms
// while 32 clients boot (config, then the kernel and initrd it names).
// Pinned versions give no mismatched pair and no broken file in 500 boots;
// the same loop against files overwritten in place (seed 003's way) sees
// the race, which proves the test can see it.
func TestImagesRace(t *testing.T) {
	const size = 96 << 10
	s := newSite(t, "allow = 192.168.0.0/16\n")
	s.write(s.cfg, mustRead(t, s.cfg)+"tftp_root = "+s.tftpRoot+"\n")
	s.write(s.template, imageTemplate)
	src := t.TempDir()
	var generation atomic.Int64
	importGen := func() {
		t.Helper()
		gen := int(generation.Add(1))
		k, i := filepath.Join(src, "vmlinuz"), filepath.Join(src, "initrd.img")
		os.WriteFile(k, bootFile("K", gen, size), 0o644)
		os.WriteFile(i, bootFile("I", gen, size), 0o644)
		if out, errOut, code := run(t, "image", "import", "-c", s.cfg, "deb", "vmlinuz="+k, "initrd.img="+i); code != 0 {
			t.Fatalf("import: %d %s %s", code, out, errOut)
		}
	}
	importGen()
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)

	t.Run("pinned versions", func(t *testing.T) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
					importGen()
				}
			}
		})
		// At least 500 boots, and at least 10 versions imported under them.
		var boots, mis, bad int64
		var seen sync.Map // generations booted
		for boots < 500 || generation.Load() < 10 {
			b, m, x := bootLoop(t, addr, 250, false, &seen)
			boots, mis, bad = boots+b, mis+m, bad+x
		}
		close(stop)
		wg.Wait()
		t.Logf("%d boots across %d imported versions: %d mismatched pairs, %d broken files", boots, generation.Load(), mis, bad)
		if mis != 0 || bad != 0 {
			t.Errorf("%d mismatched pairs, %d broken files; want 0, 0", mis, bad)
		}
		// The daemon followed the imports: nodes booted many versions.
		booted := 0
		seen.Range(func(any, any) bool { booted++; return true })
		t.Logf("%d distinct versions booted", booted)
		if booted < 5 {
			t.Errorf("only %d of %d imported versions were booted: the daemon does not follow imports", booted, generation.Load())
		}
	})

	t.Run("naive overwrite in place sees the race", func(t *testing.T) {
		dir := filepath.Join(s.tftpRoot, "naive")
		os.MkdirAll(dir, 0o755)
		write := func(g int) {
			// As seed 003's script: write over the files the tftpd serves.
			for _, f := range []struct{ kind, name string }{{"K", "vmlinuz"}, {"I", "initrd.img"}} {
				fh, err := os.OpenFile(filepath.Join(dir, f.name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					t.Error(err)
					return
				}
				fh.Write(bootFile(f.kind, g, size))
				fh.Close()
			}
		}
		write(1)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for g := 2; ; g++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					write(g)
				}
			}
		})
		boots, mis, bad := bootLoop(t, addr, 500, true, nil)
		close(stop)
		wg.Wait()
		t.Logf("naive: %d boots: %d mismatched pairs, %d broken files", boots, mis, bad)
		if mis+bad == 0 {
			t.Error("overwriting in place showed no race: the test cannot see it")
		}
	})
}

// TestImagesImportKilled: an import killed (-9) mid-download leaves no
// version visible and the previous one current; the daemon's start clears
// the staging it left.
func TestImagesImportKilled(t *testing.T) {
	s := newSite(t, "")
	s.write(s.cfg, mustRead(t, s.cfg)+"tftp_root = "+s.tftpRoot+"\n")
	s.write(s.template, imageTemplate)
	src := t.TempDir()
	k := filepath.Join(src, "vmlinuz")
	os.WriteFile(k, bootFile("K", 1, 1000), 0o644)
	if _, errOut, code := run(t, "image", "import", "-c", s.cfg, "deb", "vmlinuz="+k, "initrd.img="+k); code != 0 {
		t.Fatalf("import: %s", errOut)
	}
	before, _, _ := run(t, "image", "list", "-c", s.cfg)

	started := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10000000")
		w.Write(bytes.Repeat([]byte("x"), 100000))
		w.(http.Flusher).Flush()
		once.Do(func() { close(started) })
		<-r.Context().Done()
	}))
	defer srv.Close()
	cmd := exec.Command(binary, "image", "import", "-c", s.cfg, "deb", "vmlinuz="+srv.URL+"/big", "initrd.img="+k)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	select {
	case <-started:
	case <-exited:
		t.Fatal("the import exited before it began downloading")
	case <-time.After(time.Minute):
		t.Fatal("the import never began downloading")
	}
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Kill()
	<-exited

	images := filepath.Join(s.tftpRoot, "images")
	staged, _ := filepath.Glob(filepath.Join(images, ".staging", "*"))
	if len(staged) == 0 {
		t.Log("the killed import left nothing in staging")
	}
	versions, _ := filepath.Glob(filepath.Join(images, "deb", "*"))
	if len(versions) != 1 {
		t.Errorf("versions after the kill: %v", versions)
	}
	if after, _, _ := run(t, "image", "list", "-c", s.cfg); after != before {
		t.Errorf("image list changed:\n%s\nwas\n%s", after, before)
	}
	s.start()
	if left, _ := filepath.Glob(filepath.Join(images, ".staging", "*")); len(left) != 0 {
		t.Errorf("staging not cleaned at daemon start: %v", left)
	}
	// The config names the previous version.
	out, errOut, code := run(t, "render", "-c", s.cfg, "C0A80102")
	if code != 0 || !strings.Contains(out, "images/deb/") {
		t.Errorf("render: %d %q %s", code, out, errOut)
	}
}

// TestImagesCheckAndRender: check reports a template naming an image not
// imported; render of such a node is "not found", never half a config;
// after an import, render names the new version, and `image use` rolls it
// back.
func TestImagesCheckAndRender(t *testing.T) {
	s := newSite(t, "")
	s.write(s.cfg, mustRead(t, s.cfg)+"tftp_root = "+s.tftpRoot+"\n")
	s.write(s.template, imageTemplate)
	out, _, code := run(t, "check", "-c", s.cfg)
	if code != 3 || !strings.Contains(out, `image "deb"`) || !strings.Contains(out, "pxebootfs image import deb vmlinuz=SOURCE") {
		t.Errorf("check without the image: exit %d\n%s", code, out)
	}
	if out, _, code := run(t, "render", "-c", s.cfg, "C0A80102"); code == 0 || out != "" {
		t.Errorf("render without the image: exit %d, %q", code, out)
	}
	src := t.TempDir()
	k := filepath.Join(src, "k")
	var versions []string
	for g := 1; g <= 2; g++ {
		os.WriteFile(k, bootFile("K", g, 100), 0o644)
		out, errOut, code := run(t, "image", "import", "-c", s.cfg, "deb", "vmlinuz="+k, "initrd.img="+k)
		if code != 0 {
			t.Fatalf("import: %s", errOut)
		}
		versions = append(versions, regexp.MustCompile(`version ([0-9a-f]{8})`).FindStringSubmatch(out)[1])
	}
	if out, _, code := run(t, "image", "import", "-c", s.cfg, "deb", "vmlinuz="+k, "initrd.img="+k); code != 0 || !strings.Contains(out, "nothing imported") {
		t.Errorf("identical import: %d %q", code, out)
	}
	if out, _, code := run(t, "check", "-c", s.cfg); code != 0 && strings.Contains(out, "image") {
		t.Errorf("check after the import: exit %d\n%s", code, out)
	}
	out, _, _ = run(t, "render", "-c", s.cfg, "C0A80102")
	if !strings.Contains(out, "KERNEL images/deb/"+versions[1]+"/vmlinuz") || !strings.Contains(out, "initrd=images/deb/"+versions[1]+"/initrd.img") {
		t.Errorf("render after import:\n%s", out)
	}
	if _, errOut, code := run(t, "image", "use", "-c", s.cfg, "deb", versions[0]); code != 0 {
		t.Fatalf("use: %s", errOut)
	}
	if out, _, _ := run(t, "render", "-c", s.cfg, "C0A80102"); !strings.Contains(out, versions[0]) {
		t.Errorf("render after rollback:\n%s", out)
	}
	// The version just replaced is within its grace: remove refuses.
	if _, errOut, code := run(t, "image", "remove", "-c", s.cfg, "deb", versions[1]); code != 7 {
		t.Errorf("remove within grace: exit %d %s", code, errOut)
	}
	for _, bad := range [][]string{{"use", "deb", "../../etc"}, {"remove", "../x"}, {"import", "a/b", "f=" + k}, {"import", "deb", "../f=" + k}} {
		if _, _, code := run(t, append([]string{"image", bad[0], "-c", s.cfg}, bad[1:]...)...); code == 0 {
			t.Errorf("image %v accepted", bad)
		}
	}
	if out, _, _ := run(t, "image", "list", "-c", s.cfg); !strings.Contains(out, versions[0]) || !strings.Contains(out, versions[1]) {
		t.Errorf("list:\n%s", out)
	}
}
