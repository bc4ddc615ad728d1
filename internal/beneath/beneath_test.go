package beneath

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	for p, content := range map[string]string{
		filepath.Join(dir, "file"):         "mine",
		filepath.Join(dir, "sub", "f"):     "sub",
		filepath.Join(outside, "secret"):   "secret",
		filepath.Join(outside, "dir", "f"): "secret",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"link":     filepath.Join(outside, "secret"),
		"rel-link": "file",
		"dirlink":  filepath.Join(outside, "dir"),
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		rel     string
		want    string // content; "" means refused
		symlink bool   // refused as a symlink
	}{
		{rel: "file", want: "mine"},
		{rel: "sub/f", want: "sub"},
		{rel: "link", symlink: true},
		{rel: "rel-link", symlink: true},
		{rel: "dirlink/f", symlink: true},
		{rel: "../" + filepath.Base(outside) + "/secret", symlink: true},
		{rel: filepath.Join(outside, "secret"), symlink: true},
		{rel: "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			f, err := Open(dir, tt.rel, 0)
			if tt.want == "" {
				if err == nil {
					b, _ := io.ReadAll(f)
					f.Close()
					t.Fatalf("opened, read %q; want refused", b)
				}
				if errors.Is(err, ErrSymlink) != tt.symlink {
					t.Errorf("err = %v; symlink refusal %v, want %v", err, errors.Is(err, ErrSymlink), tt.symlink)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if b, _ := io.ReadAll(f); string(b) != tt.want {
				t.Errorf("read %q, want %q", b, tt.want)
			}
		})
	}
	fi, err := Stat(dir, "link")
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("Stat(link) = %v, %v; want the symlink itself", fi, err)
	}
	if _, err := Stat(dir, "dirlink/f"); !errors.Is(err, ErrSymlink) {
		t.Errorf("Stat(dirlink/f) = %v; want refused", err)
	}
}
