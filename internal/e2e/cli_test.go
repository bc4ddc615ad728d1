package e2e

import (
	"fmt"
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
		{"partial full mode", "[PXEBOOTFS]\npxe_template: t\nnode_dir: /netboot/node\n", "overlay_dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := write("c.cfg", tt.cfg)
			// A config that does not load is reported where every
			// command reports it, on stderr; what check finds in a
			// config that loads is its report, on stdout.
			out, errOut, code := run(t, "check", "-c", cfg)
			if code != exitConfig || !strings.Contains(out+errOut, tt.want) || !strings.Contains(out+errOut, cfg) && !strings.Contains(out+errOut, "t:") {
				t.Errorf("check: exit %d, output %q %q; want exit 3 naming %q and the file", code, out, errOut, tt.want)
			}
		})
	}
}

// TestOverlayOptionsOverridingIndexIsAConfigError: overlay_options =
// index=off is refused by check and mount alike as a config error (exit
// 3, naming the file and key), not by the first overlay mount (exit 1).
func TestOverlayOptionsOverridingIndexIsAConfigError(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"root", "node", "overlay", "mnt"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "t"), []byte("<NODE>\n"), 0o644)
	cfg := filepath.Join(dir, "c.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[PXEBOOTFS]\npxe_template: t\nnode_dir = %s/node\nroot_dir = %s/root\noverlay_dir = %s/overlay\nstart_fsid = 100\nstate_dir = %s/state\noverlay_options = index=off\n", dir, dir, dir, dir)), 0o644)
	for _, args := range [][]string{{"check", "-c", cfg}, {"mount", "-c", cfg, filepath.Join(dir, "mnt")}} {
		out, errOut, code := run(t, args...)
		if code != exitConfig || !strings.Contains(out+errOut, cfg) || !strings.Contains(out+errOut, "overlay_options") || !strings.Contains(out+errOut, "overrides index") {
			t.Errorf("%s: exit %d, output %q %q; want exit 3 naming the file, overlay_options and why", args[0], code, out, errOut)
		}
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

// TestFlagsAfterArguments: every command takes its flags before or after
// its positional arguments (one rule), e.g. `render NAME -c FILE`.
func TestFlagsAfterArguments(t *testing.T) {
	s := newSite(t, "")
	before, errBefore, codeBefore := run(t, "render", "-c", s.cfg, "C0A80102")
	after, errAfter, codeAfter := run(t, "render", "C0A80102", "-c", s.cfg)
	if codeBefore != 0 || codeAfter != 0 || before != after {
		t.Errorf("render -c F NAME: exit %d %q %s; render NAME -c F: exit %d %q %s", codeBefore, before, errBefore, codeAfter, after, errAfter)
	}
}
