package nfsexport

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestExportsFileGroupCommit: 64 new exports arriving while a rewrite of
// the exports file is in flight are all written by one more rewrite, and
// every one of them is in the file when its call returns.
func TestExportsFileGroupCommit(t *testing.T) {
	const n = 64
	file := filepath.Join(t.TempDir(), "pxebootfs.exports")
	x, err := NewExportfs(ExportfsOptions{Binary: fakeExportfs(t, "exit 0"), ExportsFile: file})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	x.beforeFileWrite = func() { once.Do(func() { close(entered); <-release }) }
	export := func(i int) Export {
		return Export{Path: fmt.Sprintf("/srv/node/%08X", i), Client: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), FSID: uint32(100 + i)}
	}
	var wg sync.WaitGroup
	errs := make([]error, n+1)
	check := func(i int) {
		if errs[i] = x.updateFile(export(i), x.exportOptions(export(i)), true); errs[i] != nil {
			return
		}
		b, _ := os.ReadFile(file)
		if !strings.Contains(string(b), export(i).Path+" "+export(i).Client.String()+"(") {
			errs[i] = fmt.Errorf("%s returned before its line was in the file", export(i))
		}
	}
	wg.Go(func() { check(n) })
	<-entered
	for i := range n {
		wg.Go(func() { check(i) })
	}
	for {
		if x.fileBatch.queuedLen() == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := x.fileWrites.Load(); got != 2 {
		t.Errorf("%d rewrites of the exports file for %d exports, want 2", got, n+1)
	}
	b, _ := os.ReadFile(file)
	if lines := strings.Count(string(b), "/srv/node/"); lines != n+1 {
		t.Errorf("exports file has %d node lines, want %d", lines, n+1)
	}
	// Forgetting goes the same way.
	if err := x.updateFile(export(3), "", false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); strings.Contains(string(b), export(3).Path+" ") {
		t.Error("forgotten export still in the file")
	}
}

// TestGaneshaFileBatch: concurrent edits of Ganesha's managed file share
// rewrites; an edit that fails is left out and only its caller sees why.
func TestGaneshaFileBatch(t *testing.T) {
	dir := t.TempDir()
	g, err := NewGanesha(GaneshaOptions{ConfigFile: filepath.Join(dir, "pxebootfs.conf"), Bus: "unix:path=" + filepath.Join(dir, "none")})
	if err != nil {
		t.Fatal(err)
	}
	const n = 32
	var wg sync.WaitGroup
	errs := make([]error, n)
	refused := fmt.Errorf("refused")
	for i := range n {
		wg.Go(func() {
			errs[i] = g.editFile(func(bs []ganeshaBlock) ([]ganeshaBlock, error) {
				if i == 7 {
					return append(bs, ganeshaBlock{ID: 999, Path: "/never"}), refused
				}
				return append(bs, ganeshaBlock{ID: uint16(100 + i), Path: fmt.Sprintf("/srv/node/%d", i), Client: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}), nil
			})
		})
	}
	wg.Wait()
	blocks, err := g.fileBlocks()
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if (i == 7) != (err == refused) {
			t.Errorf("edit %d: %v", i, err)
		}
	}
	if len(blocks) != n-1 {
		t.Errorf("%d blocks, want %d", len(blocks), n-1)
	}
	for _, b := range blocks {
		if b.ID == 999 {
			t.Error("the failed edit's block was written")
		}
	}
}
