package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// secretFile is a root-only file outside every configured directory: what
// a followed symlink would serve.
func secretFile(t *testing.T) (dir, file string, content []byte) {
	t.Helper()
	dir = t.TempDir()
	content = []byte("SECRET: root-only bytes\n")
	file = filepath.Join(dir, "normal.mod")
	if err := os.WriteFile(file, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, file, content
}

// TestStaticSubdirSwappedForSymlink: a served subdirectory of
// grub_static_dir replaced by a symlink to another directory serves
// nothing from it, through the mount and through tftpd-hpa.
func TestStaticSubdirSwappedForSymlink(t *testing.T) {
	s := newSite(t, "")
	grubDir := withGRUB(t, s, "echo <NODE>\n")
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	secretDir, _, secret := secretFile(t)
	if b, err := fetchFrom(t, addr, "grub", "x86_64-efi/normal.mod"); err != nil || string(b) != "not really a module\n" {
		t.Fatalf("the module before the swap: %q, %v", b, err)
	}
	sub := filepath.Join(s.dir, "grubstatic", "x86_64-efi")
	// Keep the kernel's entry of x86_64-efi warm, as GRUB loading its
	// modules does, then swap the directory for a symlink: reads through
	// the entry the kernel still has, and after it expired, must never
	// reach the symlink's target.
	if b, err := os.ReadFile(filepath.Join(grubDir, "x86_64-efi", "normal.mod")); err != nil || string(b) != "not really a module\n" {
		t.Fatalf("the module through the mount before the swap: %q, %v", b, err)
	}
	if err := os.RemoveAll(sub); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secretDir, sub); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(grubDir, "x86_64-efi", "normal.mod")); err == nil || bytes.Contains(b, secret) {
			t.Fatalf("mount: grub/x86_64-efi/normal.mod after the swap: %q, %v; want not found", b, err)
		}
		if b, err := fetchFrom(t, addr, "grub", "x86_64-efi/normal.mod"); err == nil || bytes.Contains(b, secret) {
			t.Fatalf("tftpd-hpa: grub/x86_64-efi/normal.mod after the swap: %q, %v; want an error", b, err)
		}
	}
	// A top-level static name that is a symlink, in both static dirs.
	for _, d := range []string{filepath.Join(s.dir, "grubstatic"), s.static} {
		if err := os.Symlink(filepath.Join(secretDir, "normal.mod"), filepath.Join(d, "evil")); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"grub", "pxelinux.cfg"} {
		if b, err := fetchFrom(t, addr, dir, "evil"); err == nil || bytes.Contains(b, secret) {
			t.Errorf("tftpd-hpa: %s/evil, a symlink: %q, %v; want an error", dir, b, err)
		}
	}
}

// TestStaticFileSwapRace: while a symlink to a root-only file is renamed
// over a served static file and back every 0.2 ms, readers through the
// mount and through tftpd-hpa never get the target's bytes, in the
// pxelinux static_dir and in grub_static_dir (top level and a
// subdirectory).
func TestStaticFileSwapRace(t *testing.T) {
	s := newSite(t, "")
	grubDir := withGRUB(t, s, "echo <NODE>\n")
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	_, secretPath, secret := secretFile(t)
	type target struct {
		file     string // in a static dir
		mountDir string // where it is served
		tftpPath string
	}
	targets := []target{
		{filepath.Join(s.static, "menu"), s.mnt, "pxelinux.cfg/menu"},
		{filepath.Join(s.dir, "grubstatic", "font.pf2"), grubDir, "grub/font.pf2"},
		{filepath.Join(s.dir, "grubstatic", "x86_64-efi", "normal.mod"), filepath.Join(grubDir, "x86_64-efi"), "grub/x86_64-efi/normal.mod"},
	}
	for _, tg := range targets {
		t.Run(filepath.Base(tg.file), func(t *testing.T) {
			honest := []byte("an honest static file\n")
			s.write(tg.file, string(honest))
			link := tg.file + ".link"
			plain := tg.file + ".plain"
			s.write(plain, string(honest))
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var leaks, reads atomic.Int64
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					// A symlink renamed over the file, then the file
					// renamed back: each step is one rename, as an
					// attacker with write access to the dir would do.
					os.Remove(link)
					os.Symlink(secretPath, link)
					os.Rename(link, tg.file)
					time.Sleep(100 * time.Microsecond)
					os.WriteFile(plain, honest, 0o644)
					os.Rename(plain, tg.file)
					time.Sleep(100 * time.Microsecond)
				}
			})
			check := func(b []byte) {
				reads.Add(1)
				if bytes.Contains(b, secret) {
					leaks.Add(1)
				}
			}
			for range 8 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						b, _ := os.ReadFile(filepath.Join(tg.mountDir, filepath.Base(tg.file)))
						check(b)
					}
				})
			}
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					dir, name := filepath.Split(tg.tftpPath)
					b, _ := fetchFrom(t, addr, filepath.Clean(dir), name)
					check(b)
				}
			})
			time.Sleep(4 * time.Second)
			close(stop)
			wg.Wait()
			t.Logf("%d reads while the file was swapped for a symlink", reads.Load())
			if leaks.Load() != 0 {
				t.Errorf("%d of %d reads served the symlink target", leaks.Load(), reads.Load())
			}
			if reads.Load() == 0 {
				t.Error(fmt.Errorf("no read happened"))
			}
		})
	}
}
