package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tftpboot")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := New(root, filepath.Join(root, "images"), filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sum(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// visible lists what a tftpd could see under images_dir: every path but
// the private staging directory.
func visible(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(s.Dir(), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(s.Dir(), p)
		if rel == stagingDir && d.IsDir() {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestImportLocal(t *testing.T) {
	s, _ := newStore(t)
	src := t.TempDir()
	k, i := writeFile(t, src, "vmlinuz-1", "kernel one"), writeFile(t, src, "initrd-1", "initrd one")
	ctx := context.Background()
	r, err := s.Import(ctx, ImportOptions{Name: "debian12", Sources: []Source{{"vmlinuz", k}, {"initrd.img", i}}, SHA256: map[string]string{"vmlinuz": sum("kernel one")}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Created || len(r.Version) != 8 {
		t.Fatalf("result %+v", r)
	}
	for f, want := range map[string]string{"vmlinuz": "kernel one", "initrd.img": "initrd one"} {
		p := filepath.Join(s.Dir(), "debian12", r.Version, f)
		b, err := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if err != nil || string(b) != want || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: %q, %v, mode %v", f, b, err, fi.Mode())
		}
	}
	ix, _ := s.Load()
	if p, err := ix.Path(s.Rel(), "debian12", "initrd.img"); err != nil || p != "images/debian12/"+r.Version+"/initrd.img" {
		t.Errorf("Path = %q, %v", p, err)
	}
	// The same bytes again: nothing new.
	r2, err := s.Import(ctx, ImportOptions{Name: "debian12", Sources: []Source{{"vmlinuz", k}, {"initrd.img", i}}})
	if err != nil || r2.Created || r2.Version != r.Version {
		t.Fatalf("identical re-import: %+v, %v", r2, err)
	}
	// New bytes: a new current version; the old one stays.
	writeFile(t, src, "initrd-1", "initrd two")
	r3, err := s.Import(ctx, ImportOptions{Name: "debian12", Sources: []Source{{"vmlinuz", k}, {"initrd.img", i}}})
	if err != nil || !r3.Created || r3.Version == r.Version || r3.Previous != r.Version {
		t.Fatalf("new import: %+v, %v", r3, err)
	}
	if got := len(visible(t, s)); got != 4 {
		t.Errorf("%d files visible, want 4 (two versions of two files)", got)
	}
}

func TestImportFailuresLeaveNothing(t *testing.T) {
	body := strings.Repeat("x", 1000)
	var slow atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		slow.Store(true)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/dies", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte(body[:400]))
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	src := t.TempDir()
	good := writeFile(t, src, "good", "good kernel")
	tests := []struct {
		name    string
		o       ImportOptions
		wantErr string
	}{
		{"checksum mismatch", ImportOptions{Sources: []Source{{"vmlinuz", good}}, SHA256: map[string]string{"vmlinuz": sum("other")}}, "sha256"},
		{"404", ImportOptions{Sources: []Source{{"vmlinuz", good}, {"initrd", srv.URL + "/missing"}}}, "404"},
		{"timeout", ImportOptions{Sources: []Source{{"initrd", srv.URL + "/slow"}}, Timeout: 300 * time.Millisecond}, "Timeout"},
		{"oversize", ImportOptions{Sources: []Source{{"initrd", srv.URL + "/ok"}}, MaxSize: 999}, "larger than"},
		{"dies mid-body", ImportOptions{Sources: []Source{{"initrd", srv.URL + "/dies"}}}, "EOF"},
		{"missing local file", ImportOptions{Sources: []Source{{"initrd", filepath.Join(src, "nope")}}}, "no such file"},
		{"hostile file name", ImportOptions{Sources: []Source{{"../../etc/passwd", good}}}, "file name"},
		{"hostile image name", ImportOptions{Name: "../x", Sources: []Source{{"vmlinuz", good}}}, "image name"},
		{"dot name", ImportOptions{Name: "..", Sources: []Source{{"vmlinuz", good}}}, "start with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, root := newStore(t)
			// A previous good version must stay current.
			first, err := s.Import(context.Background(), ImportOptions{Name: "img", Sources: []Source{{"vmlinuz", good}}})
			if err != nil {
				t.Fatal(err)
			}
			if tt.o.Name == "" {
				tt.o.Name = "img"
			}
			_, err = s.Import(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Import = %v, want an error with %q", err, tt.wantErr)
			}
			if got := visible(t, s); len(got) != 1 {
				t.Errorf("visible after a failed import: %v", got)
			}
			ix, _ := s.Load()
			if ix.Images["img"].Current != first.Version {
				t.Errorf("current changed to %s", ix.Images["img"].Current)
			}
			des, _ := os.ReadDir(filepath.Join(s.Dir(), stagingDir))
			if len(des) != 0 {
				t.Errorf("staging not cleaned: %d entries", len(des))
			}
			// Nothing outside images_dir.
			top, _ := os.ReadDir(root)
			if len(top) != 1 || top[0].Name() != "images" {
				t.Errorf("tftp_root holds %v", top)
			}
		})
	}
}

func TestImportConditionalHTTP(t *testing.T) {
	var gets, full atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/vmlinuz", func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		full.Add(1)
		w.Write([]byte("remote kernel"))
	})
	mux.HandleFunc("/SHA256SUMS", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(sum("remote kernel") + "  vmlinuz\n"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s, _ := newStore(t)
	o := ImportOptions{Name: "net", Sources: []Source{{"vmlinuz", srv.URL + "/vmlinuz"}}, SHA256Sums: srv.URL + "/SHA256SUMS"}
	r1, err := s.Import(context.Background(), o)
	if err != nil || r1.Fetched != int64(len("remote kernel")) {
		t.Fatalf("first import: %+v, %v", r1, err)
	}
	r2, err := s.Import(context.Background(), o)
	if err != nil || r2.Created || r2.Fetched != 0 || r2.Version != r1.Version {
		t.Fatalf("second import: %+v, %v", r2, err)
	}
	if gets.Load() != 2 || full.Load() != 1 {
		t.Errorf("%d GETs, %d full downloads; want 2, 1", gets.Load(), full.Load())
	}
}

func TestGarbageCollection(t *testing.T) {
	s, _ := newStore(t)
	src := t.TempDir()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var versions []string
	for i := range 6 {
		at := t0.Add(time.Duration(i) * time.Minute)
		p := writeFile(t, src, "k", strings.Repeat("k", i+1))
		r, err := s.Import(context.Background(), ImportOptions{Name: "img", Sources: []Source{{"vmlinuz", p}}, Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, r.Version)
	}
	// versions[0] was served recently although replaced long ago.
	if err := s.RecordServed(map[VersionRef]time.Time{{"img", versions[0]}: t0.Add(3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(3*time.Hour + 10*time.Minute)
	if _, err := s.Remove("img", versions[0], time.Hour, false, now); !errors.Is(err, ErrInGrace) {
		t.Fatalf("remove within grace without -force = %v", err)
	}
	if _, err := s.Remove("img", versions[5], time.Hour, true, now); err == nil {
		t.Fatal("removed the current version")
	}
	removed, err := s.Prune(Policy{Keep: 3, Grace: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	// Kept: current (5), the 3 newest (5, 4, 3), served within grace (0).
	if got := strings.Join(removed["img"], ","); got != versions[2]+","+versions[1] {
		t.Errorf("pruned %q, want %s,%s", got, versions[2], versions[1])
	}
	ix, _ := s.Load()
	if len(ix.Images["img"].Versions) != 4 || len(visible(t, s)) != 4 {
		t.Errorf("after prune: %d versions in index, %d files", len(ix.Images["img"].Versions), len(visible(t, s)))
	}
	if _, err := s.Remove("img", versions[0], time.Hour, true, now); err != nil {
		t.Fatalf("remove -force: %v", err)
	}
	if _, err := s.Use("img", versions[3], now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Use("img", "../../x", now); err == nil {
		t.Fatal("hostile version accepted")
	}
}

// TestDaemonNeverWaitsForAnImport: while an import holds the index lock
// (a long download), the daemon's calls return ErrBusy at once.
func TestDaemonNeverWaitsForAnImport(t *testing.T) {
	s, _ := newStore(t)
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- s.update(func(*Index) error { close(entered); <-release; return nil })
	}()
	<-entered
	for name, call := range map[string]func() error{
		"CleanStaging": func() error { os.MkdirAll(s.Dir(), 0o755); return s.CleanStaging(nil) },
		"RecordServed": func() error { return s.RecordServed(map[VersionRef]time.Time{{"a", "00000000"}: time.Now()}) },
		"PruneIfIdle":  func() error { _, err := s.PruneIfIdle(Policy{Keep: 1}, time.Now()); return err },
	} {
		if err := call(); !errors.Is(err, ErrBusy) {
			t.Errorf("%s during an import = %v, want ErrBusy", name, err)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
