package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExampleConfigChecks: the shipped example passes `pxebootfs check`.
func TestExampleConfigChecks(t *testing.T) {
	out, errOut, code := run(t, "check", "-c", "../../pxebootfs.cfg.example")
	if code != 0 {
		t.Fatalf("check of the example config: exit %d\n%s%s", code, out, errOut)
	}
}

func TestCheckReportsProblems(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("t", "no node here\n")
	tests := []struct {
		name, cfg, want string
	}{
		{"unknown key", "[PXEBOOTFS]\npxe_template: t\nbogus = 1\n", "bogus"},
		{"bad cidr", "[PXEBOOTFS]\npxe_template: t\nallow = 10.0.0.0/33\n", "allow"},
		{"template never names the node", "[PXEBOOTFS]\npxe_template: t\n", "t:1:"},
		{"missing template", "[PXEBOOTFS]\npxe_template: nope\n", "pxe_template"},
		{"partial full mode", "[PXEBOOTFS]\npxe_template: t\nnode_dir: /netboot/node\n", "root_dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := write("c.cfg", tt.cfg)
			out, _, code := run(t, "check", "-c", cfg)
			if code == 0 || !strings.Contains(out, tt.want) || !strings.Contains(out, cfg) && !strings.Contains(out, "t:") {
				t.Errorf("check: exit %d, output %q; want failure naming %q and the file", code, out, tt.want)
			}
		})
	}
}

func TestMountBadConfigFailsAtStart(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.cfg")
	os.WriteFile(cfg, []byte("[PXEBOOTFS]\npxe_template: missing.template\n"), 0o644)
	_, errOut, code := run(t, "mount", "-c", cfg, dir)
	if code == 0 || !strings.Contains(errOut, cfg) || !strings.Contains(errOut, "pxe_template") {
		t.Errorf("mount with bad config: exit %d, stderr %q", code, errOut)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, cmd := range []string{"mount", "render", "check", "version"} {
		if _, errOut, code := run(t, cmd, "-h"); code != 0 || !strings.Contains(errOut, "usage: pxebootfs "+cmd) {
			t.Errorf("%s -h: exit %d, %q", cmd, code, errOut)
		}
	}
	if out, _, code := run(t, "version"); code != 0 || !strings.HasPrefix(out, "pxebootfs ") {
		t.Errorf("version: %d %q", code, out)
	}
	if _, _, code := run(t, "nonsense"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}
