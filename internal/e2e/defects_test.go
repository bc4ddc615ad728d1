package e2e

import (
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// Tests of defects found from outside (issue 10): each failed before its fix.

// readOnlyDir mounts a read-only tmpfs at a new directory under base and
// returns it; the test's cleanup unmounts it.
func readOnlyDir(t *testing.T, base string) string {
	t.Helper()
	dir := filepath.Join(base, "ro")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_RDONLY, "size=1m"); err != nil {
		t.Fatalf("mount a read-only tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// tree lists every path under dir, to prove a command created nothing.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestCheckAndMountExitCodes: every config problem is exit 3 for check and
// mount alike, naming the file and the key; a problem of the machine is 1;
// a failed mount creates nothing on disk.
func TestCheckAndMountExitCodes(t *testing.T) {
	testenv.RequireRoot(t)
	base := t.TempDir()
	ro := readOnlyDir(t, base)
	write := func(name, s string) string {
		p := filepath.Join(base, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("ok.template", "LABEL x\n  APPEND node=<NODE>\n")
	write("nonode.template", "no node here\n")
	write("broken.template", "{{.Node\n")
	write("afile", "x\n")
	fresh := filepath.Join(base, "fresh") // must never appear
	golden := filepath.Join(base, "golden")
	if err := os.Mkdir(golden, 0o755); err != nil {
		t.Fatal(err)
	}
	full := func(state string) string {
		// export = none: whether this machine runs a kernel NFS server
		// is TestFullModeCheck's business, not this table's.
		return fmt.Sprintf("[PXEBOOTFS]\npxe_template: ok.template\nstate_dir: %s\nnode_dir: %s/node\nroot_dir: %s\noverlay_dir: %s/overlay\nstart_fsid: 10\nexport: none\n",
			state, fresh, golden, fresh)
	}
	tests := []struct {
		name      string
		cfg       string
		checkCode int
		mountCode int    // 0: not tried (mount would succeed)
		want      string // in check's output and mount's log
	}{
		{"unknown key", "[PXEBOOTFS]\npxe_template: ok.template\nfrobnicate = 1\n", exitConfig, exitConfig, "frobnicate: unknown key"},
		{"bad value", "[PXEBOOTFS]\npxe_template: ok.template\nallow = 10.0.0.0/33\n", exitConfig, exitConfig, "allow"},
		{"missing template", "[PXEBOOTFS]\npxe_template: nope.template\n", exitConfig, exitConfig, "pxe_template"},
		{"broken template", "[PXEBOOTFS]\npxe_template: broken.template\n", exitConfig, exitConfig, "broken.template"},
		{"template never names the node", "[PXEBOOTFS]\npxe_template: nonode.template\n", exitConfig, 0, "nonode.template:1"},
		{"state_dir on a read-only filesystem", "[PXEBOOTFS]\npxe_template: ok.template\nstate_dir: " + ro + "/state\n", exitConfig, exitConfig, "state_dir: " + ro + "/state cannot be created"},
		{"state_dir is a file", "[PXEBOOTFS]\npxe_template: ok.template\nstate_dir: " + filepath.Join(base, "afile") + "\n", exitConfig, exitConfig, "state_dir: " + filepath.Join(base, "afile") + " exists and is not a directory"},
		{"full mode, state_dir read-only", full(ro + "/state"), exitConfig, exitConfig, "state_dir"},
		// node_dir and overlay_dir do not exist yet: mount will create
		// them; check says so in notes, tests the overlay where they
		// will be, and passes, creating nothing.
		{"full mode, dirs not there yet", full(filepath.Join(fresh, "state")), 0, 0, "pxebootfs mount creates it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := write("c.cfg", tt.cfg)
			before := tree(t, base)
			out, errOut, code := run(t, "check", "-c", cfg)
			if code != tt.checkCode || !strings.Contains(out+errOut, tt.want) || !strings.Contains(out+errOut, cfg) {
				t.Errorf("check: exit %d, output %q; want exit %d naming %s and %q", code, out+errOut, tt.checkCode, cfg, tt.want)
			}
			if tt.mountCode != 0 {
				mnt := filepath.Join(base, "mnt")
				os.Mkdir(mnt, 0o755)
				before = tree(t, base)
				_, errOut, code := run(t, "mount", "-c", cfg, mnt)
				if code != tt.mountCode || !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, cfg) {
					t.Errorf("mount: exit %d, log %q; want exit %d naming %s and %q", code, errOut, tt.mountCode, cfg, tt.want)
				}
				if mounted(mnt) {
					unix.Unmount(mnt, unix.MNT_DETACH)
					t.Fatal("mount failed but left its mount")
				}
			}
			if after := tree(t, base); !slices.Equal(after, before) {
				t.Errorf("a failed command changed the disk:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

// TestFailedStartCreatesNothing: a start that fails after the directories
// were created (here: the mount point is missing) removes what it created.
func TestFailedStartCreatesNothing(t *testing.T) {
	f := newFullSite(t, "")
	// Fresh directories under a parent that does not exist yet.
	fresh := filepath.Join(filepath.Dir(f.state), "fresh")
	f.write(f.cfg, strings.NewReplacer(
		"state_dir = "+f.state, "state_dir = "+filepath.Join(fresh, "state"),
		"node_dir: "+f.nodes, "node_dir: "+filepath.Join(fresh, "node"),
		"overlay_dir: "+f.overlays, "overlay_dir: "+filepath.Join(fresh, "overlay"),
	).Replace(mustRead(t, f.cfg)))
	// A mount point that is a file: mount makes a missing one, but
	// cannot make this one, after it made its own directories.
	notADir := filepath.Join(f.tftpRoot, "a-file")
	f.write(notADir, "")
	_, errOut, code := runTimeout(t, time.Minute, "mount", "-c", f.cfg, notADir)
	if code == 0 {
		t.Fatalf("mount on a file succeeded:\n%s", errOut)
	}
	if exists(fresh) {
		t.Errorf("the failed start left %v behind:\n%s", tree(t, fresh), errOut)
	}
	if !strings.Contains(errOut, "removed the directories it had created") {
		t.Errorf("log does not say what it removed:\n%s", errOut)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestResetLargeLayerThenKill: a reset gives the node its fresh root at
// once, before its old layer (20,000 files) is deleted; a kill -9 right
// after leaves the node served and fresh, and the next start deletes the
// old layer.
func TestResetLargeLayerThenKill(t *testing.T) {
	f := newFullSite(t, "")
	d := f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	mustFetch(t, addr, "C0A80102")
	root := filepath.Join(f.nodes, "C0A80102")
	upper := filepath.Join(f.overlays, "C0A80102", "upper")
	for i := range 200 {
		dir := filepath.Join(root, "data", fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := range 100 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(j)), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	f.mustAdmin(t, "reset", "-force", "C0A80102")
	took := time.Since(start)
	aside := f.oldLayers("C0A80102")
	d.cmd.Process.Kill() // at once, while the old layer may be being deleted
	<-d.done
	t.Logf("reset returned after %v; %d old layer dirs were still there at the kill", took, len(aside))
	if e, ok := f.exports(t)[root]; !ok || e.FSID != 10000 || f.overlayMounts(t)[root] != 1 {
		t.Errorf("right after reset: exported %v (%+v), %d mounts; want exported and mounted", ok, e, f.overlayMounts(t)[root])
	}
	if des, _ := os.ReadDir(upper); len(des) != 0 {
		t.Errorf("upper after reset holds %d entries, want a fresh one", len(des))
	}

	d = f.start()
	if len(aside) > 0 {
		d.waitLog(t, "deleting old writable layers left by an interrupted reset")
	}
	f.waitOldLayersGone(t, "C0A80102", 60*time.Second)
	mustFetch(t, addr, "C0A80102")
	if exists(filepath.Join(root, "data")) || f.overlayMounts(t)[root] != 1 {
		t.Error("after restart the node is not served fresh")
	}
}

// TestReleaseGuard: release and release -purge of a node that just booted
// are refused (exit 7) and change nothing; -force does it.
func TestReleaseGuard(t *testing.T) {
	f := newFullSite(t, "")
	f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	mustFetch(t, addr, "C0A80102")
	root := filepath.Join(f.nodes, "C0A80102")
	os.WriteFile(filepath.Join(root, "kept"), []byte("data\n"), 0o644)
	for _, args := range [][]string{{"C0A80102"}, {"-purge", "C0A80102"}} {
		_, errOut, code := f.admin(t, "release", args...)
		if code != exitRefused || !strings.Contains(errOut, "reset_guard") || !strings.Contains(errOut, "-force") {
			t.Errorf("release %v of a node that just booted: exit %d, %q; want %d naming reset_guard and -force", args, code, errOut, exitRefused)
		}
		if _, ok := f.exports(t)[root]; !ok || !exists(filepath.Join(root, "kept")) {
			t.Fatalf("refused release %v changed the node", args)
		}
	}
	f.mustAdmin(t, "release", "-purge", "-force", "C0A80102")
	if _, ok := f.exports(t)[root]; ok || exists(filepath.Join(f.overlays, "C0A80102")) {
		t.Error("forced purge left the export or the data")
	}
}

// majorLines returns Ganesha's MAJ and CRIT log lines.
func majorLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, " :MAJ :") || strings.Contains(l, " :CRIT :") {
			out = append(out, l)
		}
	}
	return out
}

// TestGaneshaNoMajorLines: provisioning, resetting and releasing nodes
// leaves no MAJ or CRIT line in Ganesha's log (admins alert on them).
func TestGaneshaNoMajorLines(t *testing.T) {
	f := newGaneshaSite(t)
	f.start("-v")
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	before := len(majorLines(f.srv.Log()))
	nodeRoot(t, addr, "7F000001")
	nodeRoot(t, addr, "7F000002")
	f.mustAdmin(t, "reset", "-force", "7F000001")
	f.mustAdmin(t, "release", "-force", "7F000002")
	nodeRoot(t, addr, "7F000002")
	if lines := majorLines(f.srv.Log()); len(lines) > before {
		t.Errorf("Ganesha logged %d MAJ/CRIT lines:\n%s", len(lines)-before, strings.Join(lines[before:], "\n"))
	}
}

// TestGaneshaDownAtStart: pxebootfs starting while Ganesha is down (after a
// reboot, or both restarting) restores its nodes without errors, and their
// exports are active once Ganesha starts.
func TestGaneshaDownAtStart(t *testing.T) {
	f := newGaneshaSite(t)
	d := f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	root := nodeRoot(t, addr, "7F000001")
	before := f.exports(t)
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	f.srv.Stop(t)

	d = f.start()
	d.waitLog(t, "restore: done")
	log := d.stderr.String()
	if strings.Contains(log, "restore failed") || !strings.Contains(log, "ready=1") {
		t.Errorf("restore with Ganesha down:\n%s", log)
	}
	if n := f.nodesJSON(t)["7F000001"]; n.LastError != "" {
		t.Errorf("node has error %q recorded", n.LastError)
	}
	f.srv.Start(t)
	d.waitLog(t, "ganesha answers again; node exports checked")
	if after := f.exports(t); after[root] != before[root] {
		t.Errorf("after Ganesha started: export %+v, want %+v", after[root], before[root])
	}
	if names, err := f.srv.NS.NFSList(t, netip.MustParseAddr("127.0.0.1"), root); err != nil {
		t.Errorf("node cannot list its root over NFS: %v (%q)", err, names)
	}
}
