package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFind(t *testing.T) {
	const etc = "/etc/pxebootfs/" + FileName
	tests := []struct {
		name     string
		explicit string
		inCwd    bool
		inHome   bool
		want     string // "cwd", "home", or a literal path; "" for ErrNotFound
	}{
		{name: "explicit wins", explicit: "/some/where.cfg", inCwd: true, inHome: true, want: "/some/where.cfg"},
		{name: "explicit need not exist", explicit: "missing.cfg", want: "missing.cfg"},
		{name: "cwd before home", inCwd: true, inHome: true, want: "cwd"},
		{name: "home when cwd has none", inHome: true, want: "home"},
		{name: "cwd alone", inCwd: true, want: "cwd"},
		{name: "none", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cwd, home := t.TempDir(), t.TempDir()
			t.Chdir(cwd)
			t.Setenv("HOME", home)
			if tt.inCwd {
				writeFile(t, filepath.Join(cwd, FileName))
			}
			if tt.inHome {
				writeFile(t, filepath.Join(home, "."+FileName))
			}
			want := tt.want
			switch want {
			case "cwd":
				want = "./" + FileName
			case "home":
				want = filepath.Join(home, "."+FileName)
			case "":
				if _, err := os.Stat(etc); err == nil {
					want = etc // this host has a system config; Find must pick it
				}
			}
			got, err := Find(tt.explicit)
			if want == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Find = %q, %v; want ErrNotFound", got, err)
				}
				return
			}
			if err != nil || got != want {
				t.Fatalf("Find = %q, %v; want %q", got, err, want)
			}
		})
	}
}

func TestSearchPathsOrder(t *testing.T) {
	t.Setenv("HOME", "/home/someone")
	want := []string{"./pxebootfs.cfg", "/home/someone/.pxebootfs.cfg", "/etc/pxebootfs/pxebootfs.cfg"}
	got := SearchPaths()
	if len(got) != len(want) {
		t.Fatalf("SearchPaths() = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("SearchPaths() = %q, want %q", got, want)
		}
	}
}

func TestSearchPathsWithoutHome(t *testing.T) {
	t.Setenv("HOME", "")
	got := SearchPaths()
	if len(got) != 2 || got[0] != "./pxebootfs.cfg" || got[1] != "/etc/pxebootfs/pxebootfs.cfg" {
		t.Fatalf("SearchPaths() without HOME = %q", got)
	}
}

func writeFile(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
}
