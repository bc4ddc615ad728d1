package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFixedChanged: a reload may change only the reloadable keys; any
// other change is named, so the daemon can say which key takes a restart.
func TestFixedChanged(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"t", "t2", "e", "inv"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"st", "n", "n2", "r", "o"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	base := map[string]string{
		"pxe_template": "t", "node_dir": "n", "root_dir": "r", "overlay_dir": "o",
		"start_fsid": "100", "state_dir": "s", "max_nodes": "10", "reset_guard": "60",
	}
	load := func(t *testing.T, change map[string]string) *Config {
		t.Helper()
		text := "[PXEBOOTFS]\n"
		for _, k := range Keys() {
			v, ok := change[k.Name]
			if !ok {
				v, ok = base[k.Name]
			}
			if ok {
				text += k.Name + ": " + v + "\n"
			}
		}
		c, err := Parse(filepath.Join(dir, "pxebootfs.cfg"), []byte(text))
		if err != nil {
			t.Fatalf("Parse:\n%s\n%v", text, err)
		}
		return c
	}
	tests := []struct {
		name   string
		change map[string]string
		want   []string
	}{
		{"nothing", nil, nil},
		{"template", map[string]string{"pxe_template": "t2"}, nil},
		{"ethers, static_dir, allow, inventory", map[string]string{"ethers": "e", "static_dir": "st", "allow": "10.0.0.0/8", "inventory": "inv"}, nil},
		{"reset policy", map[string]string{"reset_guard": "0", "reset_on_boot": "true"}, nil},
		{"default written out", map[string]string{"export": "exportfs"}, nil},
		{"node_dir", map[string]string{"node_dir": "n2"}, []string{"node_dir"}},
		{"start_fsid", map[string]string{"start_fsid": "200"}, []string{"start_fsid"}},
		{"state_dir", map[string]string{"state_dir": "s2"}, []string{"state_dir"}},
		{"export", map[string]string{"export": "none"}, []string{"export"}},
		{"overlay_options", map[string]string{"overlay_options": "redirect_dir=on"}, []string{"overlay_options"}},
		{"metrics_listen", map[string]string{"metrics_listen": "127.0.0.1:1"}, []string{"metrics_listen"}},
		{"two, in table order", map[string]string{"max_nodes": "11", "node_dir": "n2"}, []string{"node_dir", "max_nodes"}},
	}
	old := load(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FixedChanged(old, load(t, tt.change)); !slices.Equal(got, tt.want) {
				t.Errorf("FixedChanged = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestReloadableKeys pins which keys a reload may change: adding one to
// the list is a decision (the daemon must then apply it live), not a typo.
func TestReloadableKeys(t *testing.T) {
	var got []string
	for _, k := range Keys() {
		if k.Reload {
			got = append(got, k.Name)
		}
	}
	want := []string{"pxe_template", "static_dir", "ethers", "allow", "inventory", "reset_guard", "reset_on_boot",
		"install_template", "local_template", "grub_install_template", "grub_local_template", "ipxe_install_template", "ipxe_local_template"}
	if !slices.Equal(got, want) {
		t.Errorf("reloadable keys %q, want %q", got, want)
	}
}

func TestCheckAndCreateDirs(t *testing.T) {
	base := t.TempDir()
	ro := filepath.Join(base, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, state, want string // want: "" ok, else a substring of the error
	}{
		{"exists", base, ""},
		{"created below a writable dir", filepath.Join(base, "a", "b"), ""},
		{"a file", file, "not a directory"},
		{"below a file", filepath.Join(file, "x"), "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{File: "/etc/p.cfg", StateDir: tt.state}
			err := CheckDirs(c)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckDirs = %v", err)
				}
				created, err := CreateDirs(c)
				if err != nil {
					t.Fatal(err)
				}
				if fi, err := os.Stat(tt.state); err != nil || !fi.IsDir() {
					t.Fatalf("state_dir not created: %v", err)
				}
				RemoveCreated(created)
				if tt.state != base {
					if _, err := os.Stat(filepath.Join(base, "a")); !os.IsNotExist(err) {
						t.Errorf("RemoveCreated left %s: %v", filepath.Join(base, "a"), err)
					}
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Key != "state_dir" || e.File != "/etc/p.cfg" || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CheckDirs = %v, want an *Error for state_dir containing %q", err, tt.want)
			}
		})
	}
}
