package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/registry"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
	"github.com/pxebootfs/pxebootfs/nfsexport"
)

// Exit codes of the admin commands (cmd/pxebootfs/exit.go).
const (
	exitFailure     = 1
	exitConfig      = 3
	exitNoDaemon    = 4
	exitUnknownNode = 5
	exitPermission  = 6
	exitRefused     = 7
)

// admin runs an admin command against the site and returns stdout, stderr
// and the exit code.
func (f *site) admin(t *testing.T, cmd string, args ...string) (string, string, int) {
	t.Helper()
	return run(t, append([]string{cmd, "-c", f.cfg}, args...)...)
}

// mustAdmin runs an admin command that must succeed.
func (f *site) mustAdmin(t *testing.T, cmd string, args ...string) string {
	t.Helper()
	out, errOut, code := f.admin(t, cmd, args...)
	if code != 0 {
		t.Fatalf("pxebootfs %s %s: exit %d\n%s%s", cmd, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

type nodeJSON struct {
	Node      string    `json:"node"`
	IP        string    `json:"ip"`
	MAC       string    `json:"mac"`
	FSID      uint32    `json:"fsid"`
	Root      string    `json:"root"`
	RootGen   string    `json:"root_generation"`
	Mounted   *bool     `json:"mounted"`
	Exported  *bool     `json:"exported"`
	Created   time.Time `json:"created"`
	LastBoot  time.Time `json:"last_boot"`
	BootCount uint64    `json:"boot_count"`
	LastError string    `json:"last_error"`
}

func (f *site) nodesJSON(t *testing.T) map[string]nodeJSON {
	t.Helper()
	var list []nodeJSON
	out := f.mustAdmin(t, "nodes", "-json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("nodes -json does not parse: %v\n%s", err, out)
	}
	m := map[string]nodeJSON{}
	for _, n := range list {
		m[n.Node] = n
	}
	return m
}

func isTrue(b *bool) bool { return b != nil && *b }

// oldLayers lists what resets of node set aside and nobody deleted yet.
func (f *fullSite) oldLayers(node string) []string {
	aside, _ := filepath.Glob(filepath.Join(f.overlays, node, "*.reset-*"))
	return aside
}

// waitOldLayersGone waits until the background deletion of node's old
// layers has finished; the test fails if it has not within timeout.
func (f *fullSite) waitOldLayersGone(t *testing.T, node string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); len(f.oldLayers(node)) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("old layers of %s still there after %v: %v", node, timeout, f.oldLayers(node))
			return
		}
	}
}

func mustFetch(t *testing.T, addr, name string) string {
	t.Helper()
	b, err := fetch(t, addr, name)
	if err != nil {
		t.Fatalf("fetch %s: %v", name, err)
	}
	return string(b)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestAdminNodes lists nodes through the daemon, as columns and as JSON,
// and from the registry when no daemon runs.
func TestAdminNodes(t *testing.T) {
	f := newFullSite(t, "")
	// Before the first start there is no state at all: an empty list.
	if out, errOut, code := f.admin(t, "nodes"); code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(errOut, "no daemon is running") {
		t.Errorf("nodes before any start: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	d := f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	mustFetch(t, addr, "C0A80102")
	mustFetch(t, addr, "C0A80102")
	mustFetch(t, addr, "01-52-54-00-12-34-56") // the same node by MAC, from ethers
	mustFetch(t, addr, "C0A80103")

	out := f.mustAdmin(t, "nodes")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NODE") {
		t.Fatalf("nodes:\n%s", out)
	}
	row := strings.Fields(lines[1])
	if want := []string{"C0A80102", "192.168.1.2", "52:54:00:12:34:56", "10000", "root_dir/dir", "yes", "yes"}; !slices.Equal(row[:7], want) {
		t.Errorf("row %q, want it to start with %q", lines[1], want)
	}
	// A tftpd that sees a resent request opens the file again, so at least.
	// ... BOOTS INSTALL SINCE LAST-ERROR: no install state, no error.
	if boots, err := strconv.Atoi(row[len(row)-4]); err != nil || boots < 3 || !slices.Equal(row[len(row)-3:], []string{"-", "-", "-"}) {
		t.Errorf("row %q: want at least 3 boots, no install state and no error", lines[1])
	}

	nodes := f.nodesJSON(t)
	n := nodes["C0A80103"]
	if len(nodes) != 2 || n.FSID != 10001 || n.IP != "192.168.1.3" || !isTrue(n.Mounted) || !isTrue(n.Exported) ||
		n.Root != "root_dir" || n.RootGen != "dir" ||
		n.BootCount < 1 || n.Created.IsZero() || n.LastBoot.Before(n.Created) {
		t.Errorf("nodes -json: %+v", nodes)
	}

	// Without the daemon: the registry, and the roots it left in place.
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := f.admin(t, "nodes", "-json")
	var offline []nodeJSON
	if code != 0 || json.Unmarshal([]byte(out), &offline) != nil || !strings.Contains(errOut, "no daemon is running") {
		t.Fatalf("nodes without a daemon: exit %d\n%s%s", code, out, errOut)
	}
	if len(offline) != 2 || offline[0].FSID != 10000 || !isTrue(offline[0].Mounted) || !isTrue(offline[0].Exported) {
		t.Errorf("nodes without a daemon: %+v", offline)
	}
}

// TestAdminReset: reset refuses a node that just booted, unless forced; it
// really wipes the upper dir and keeps the fsid.
func TestAdminReset(t *testing.T) {
	f := newFullSite(t, "")
	f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	before := mustFetch(t, addr, "C0A80102")
	mustFetch(t, addr, "C0A80103")
	n1 := filepath.Join(f.nodes, "C0A80102")
	upper := filepath.Join(f.overlays, "C0A80102", "upper")
	os.WriteFile(filepath.Join(n1, "etc", "golden"), []byte("changed by the node\n"), 0o644)
	os.WriteFile(filepath.Join(n1, "installed"), []byte("node data\n"), 0o644)
	os.WriteFile(filepath.Join(f.nodes, "C0A80103", "kept"), []byte("other node\n"), 0o644)
	if !exists(filepath.Join(upper, "installed")) {
		t.Fatal("the node's write did not land in its upper dir")
	}

	// Booted a moment ago: refused, nothing touched.
	_, errOut, code := f.admin(t, "reset", "C0A80102")
	if code != exitRefused || !strings.Contains(errOut, "reset_guard") || !strings.Contains(errOut, "-force") {
		t.Errorf("reset of a node that just booted: exit %d, stderr %q; want %d naming reset_guard and -force", code, errOut, exitRefused)
	}
	if !exists(filepath.Join(n1, "installed")) {
		t.Fatal("a refused reset wiped the node")
	}

	out := f.mustAdmin(t, "reset", "192.168.1.2", "-force")
	if !strings.Contains(out, "C0A80102: reset") {
		t.Errorf("reset output %q", out)
	}
	if exists(filepath.Join(upper, "installed")) || exists(filepath.Join(n1, "installed")) {
		t.Error("reset left the node's file")
	}
	if b, _ := os.ReadFile(filepath.Join(n1, "etc", "golden")); string(b) != "golden\n" {
		t.Errorf("after reset the node sees %q, want the golden root's", b)
	}
	// The old layer is deleted in the background, after the node got its
	// fresh root.
	f.waitOldLayersGone(t, "C0A80102", 10*time.Second)
	if !exists(filepath.Join(f.nodes, "C0A80103", "kept")) {
		t.Error("reset of one node touched another")
	}
	e, ok := f.exports(t)[n1]
	if !ok || e.FSID != 10000 || e.Client != netip.MustParseAddr("192.168.1.2") || f.overlayMounts(t)[n1] != 1 {
		t.Errorf("after reset: export %+v (%v), %d mounts; want fsid 10000 to 192.168.1.2, one mount", e, ok, f.overlayMounts(t)[n1])
	}
	if after := mustFetch(t, addr, "C0A80102"); after != before {
		t.Errorf("config changed by reset:\n%s\nwant\n%s", after, before)
	}

	// Unknown nodes, alone or among known ones.
	_, errOut, code = f.admin(t, "reset", "-force", "0A0000FF")
	if code != exitUnknownNode || !strings.Contains(errOut, "0A0000FF") || !strings.Contains(errOut, "unknown node") {
		t.Errorf("reset of an unknown node: exit %d, stderr %q", code, errOut)
	}
	out, errOut, code = f.admin(t, "reset", "-force", "C0A80103", "10.0.0.255")
	if code != exitUnknownNode || !strings.Contains(out, "C0A80103: reset") || !strings.Contains(errOut, "0A0000FF") {
		t.Errorf("reset of a known and an unknown node: exit %d\n%s%s", code, out, errOut)
	}
	if exists(filepath.Join(f.nodes, "C0A80103", "kept")) {
		t.Error("the known node was not reset")
	}
}

// TestAdminResetGuardZero: with reset_guard = 0 a reset needs no -force.
func TestAdminResetGuardZero(t *testing.T) {
	f := newFullSite(t, "reset_guard = 0\n")
	f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	mustFetch(t, addr, "C0A80102")
	os.WriteFile(filepath.Join(f.nodes, "C0A80102", "installed"), nil, 0o644)
	f.mustAdmin(t, "reset", "C0A80102")
	if exists(filepath.Join(f.overlays, "C0A80102", "upper", "installed")) {
		t.Error("not wiped")
	}
}

// TestAdminResetOnBoot: with reset_on_boot, a node that fetches its config
// again after reset_guard starts from a clean root; within it, it does not.
func TestAdminResetOnBoot(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		wiped bool
	}{
		{"after reset_guard", "reset_on_boot = true\nreset_guard = 0\n", true},
		{"within reset_guard", "reset_on_boot = true\n", false},
		{"off", "reset_guard = 0\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFullSite(t, tt.extra)
			f.start()
			addr := testenv.StartTFTPD(t, f.tftpRoot)
			first := mustFetch(t, addr, "C0A80102")
			os.WriteFile(filepath.Join(f.nodes, "C0A80102", "installed"), nil, 0o644)
			if again := mustFetch(t, addr, "C0A80102"); again != first {
				t.Errorf("config changed: %q, want %q", again, first)
			}
			if wiped := !exists(filepath.Join(f.overlays, "C0A80102", "upper", "installed")); wiped != tt.wiped {
				t.Errorf("wiped = %v, want %v", wiped, tt.wiped)
			}
			if e := f.exports(t)[filepath.Join(f.nodes, "C0A80102")]; e.FSID != 10000 {
				t.Errorf("export after the second boot: %+v, want fsid 10000", e)
			}
		})
	}
}

// TestAdminRelease: release unexports and unmounts and keeps the data and
// the fsid for the next boot; -purge deletes and forgets, and the fsid is
// never handed out again.
func TestAdminRelease(t *testing.T) {
	f := newFullSite(t, "")
	d := f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	mustFetch(t, addr, "C0A80102")
	mustFetch(t, addr, "C0A80103")
	n1, n2 := filepath.Join(f.nodes, "C0A80102"), filepath.Join(f.nodes, "C0A80103")
	os.WriteFile(filepath.Join(n1, "kept"), []byte("node 1\n"), 0o644)
	os.WriteFile(filepath.Join(n2, "doomed"), []byte("node 2\n"), 0o644)

	// The nodes booted a moment ago: releasing them takes -force.
	f.mustAdmin(t, "release", "-force", "C0A80102")
	if _, ok := f.exports(t)[n1]; ok || f.overlayMounts(t)[n1] != 0 {
		t.Errorf("released node still exported or mounted")
	}
	if !exists(filepath.Join(f.overlays, "C0A80102", "upper", "kept")) {
		t.Error("release deleted the node's data")
	}
	if n := f.nodesJSON(t)["C0A80102"]; n.FSID != 10000 || isTrue(n.Mounted) || isTrue(n.Exported) {
		t.Errorf("released node listed as %+v", n)
	}
	// A daemon restart does not bring a released node back...
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	f.start()
	if _, ok := f.exports(t)[n1]; ok || f.overlayMounts(t)[n1] != 0 {
		t.Errorf("restart brought the released node back")
	}
	// ...its next boot does, as it was.
	mustFetch(t, addr, "C0A80102")
	if e := f.exports(t)[n1]; e.FSID != 10000 || !exists(filepath.Join(n1, "kept")) {
		t.Errorf("after the next boot: export %+v, data kept %v", e, exists(filepath.Join(n1, "kept")))
	}

	f.mustAdmin(t, "release", "C0A80103", "-purge", "-force")
	if _, ok := f.exports(t)[n2]; ok || f.overlayMounts(t)[n2] != 0 || exists(filepath.Join(f.overlays, "C0A80103")) || exists(n2) {
		t.Error("purged node left an export, a mount or files")
	}
	if _, ok := f.nodesJSON(t)["C0A80103"]; ok {
		t.Error("purged node still listed")
	}
	if reg, err := registry.OpenReadOnly(f.state); err != nil || !slices.Contains(reg.Retired(), 10001) {
		t.Errorf("fsid 10001 not retired (%v)", err)
	}
	mustFetch(t, addr, "C0A80103")
	if e := f.exports(t)[n2]; e.FSID != 10002 || exists(filepath.Join(n2, "doomed")) {
		t.Errorf("purged node came back with %+v, data %v; want a fresh root with fsid 10002", e, exists(filepath.Join(n2, "doomed")))
	}

	_, errOut, code := f.admin(t, "release", "-purge", "0A0000FF")
	if code != exitUnknownNode || !strings.Contains(errOut, "unknown node") {
		t.Errorf("release of an unknown node: exit %d, stderr %q", code, errOut)
	}
}

// TestAdminReload: `pxebootfs reload` and SIGHUP switch to a new config
// without unmounting; a broken template, a broken config, or a change of a
// key fixed at start is rejected and the old config keeps serving.
func TestAdminReload(t *testing.T) {
	f := newFullSite(t, "")
	d := f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	mustFetch(t, addr, "C0A80103")
	cfg, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A template the file watcher does not know: only a reload finds it.
	second := filepath.Join(f.dir, "second.template")
	f.write(second, "LABEL second\n  APPEND fsid={{.FSID}} node=<NODE>\n")
	f.write(f.cfg, strings.NewReplacer(
		"allow = 192.168.0.0/16, 10.0.0.0/8", "allow = 192.168.1.2/32",
		"pxe_template: pxelinux.cfg.template", "pxe_template: second.template",
	).Replace(string(cfg)))
	if out := f.mustAdmin(t, "reload"); !strings.Contains(out, "reloaded") {
		t.Errorf("reload output %q", out)
	}
	fsid := f.exports(t)[filepath.Join(f.nodes, "C0A80103")].FSID + 1
	if got, want := mustFetch(t, addr, "C0A80102"), fmt.Sprintf("LABEL second\n  APPEND fsid=%d node=C0A80102\n", fsid); got != want {
		t.Errorf("after reload: %q, want %q", got, want)
	}
	// allow shrank: C0A80103 is no longer served (its root stays). Every
	// open resolves the name again, so the kernel's entry cache does not
	// keep it served.
	if _, err := fetch(t, addr, "C0A80103"); err == nil {
		t.Error("a node outside the new allow list is still served")
	}
	if !mounted(f.mnt) {
		t.Fatal("reload unmounted")
	}

	good := mustFetch(t, addr, "C0A80102")
	rejected := []struct {
		name  string
		apply func()
		want  string
	}{
		{"broken template", func() { f.write(second, "LABEL {{.Node\n") }, "second.template"},
		{"template without the node", func() { f.write(second, "LABEL nobody\n") }, "second.template"},
		// The daemon is found through state_dir even when the rest of
		// the file does not load; it rejects the reload and says why.
		{"broken config", func() {
			f.write(f.cfg, "[PXEBOOTFS]\npxe_template = second.template\nstate_dir = "+f.state+"\nbogus = 1\n")
		}, "bogus"},
		{"fixed key changed", func() {
			f.write(f.cfg, strings.Replace(string(cfg), "start_fsid: 10000", "start_fsid: 20000", 1))
		}, "start_fsid"},
	}
	for _, tt := range rejected {
		t.Run(tt.name, func(t *testing.T) {
			f.write(second, "LABEL second\n  APPEND fsid={{.FSID}} node=<NODE>\n")
			f.write(f.cfg, strings.Replace(string(cfg), "pxe_template: pxelinux.cfg.template", "pxe_template: second.template", 1))
			f.mustAdmin(t, "reload")
			tt.apply()
			_, errOut, code := f.admin(t, "reload")
			if code != exitConfig || !strings.Contains(errOut, tt.want) {
				t.Errorf("reload: exit %d, stderr %q; want %d naming %q", code, errOut, exitConfig, tt.want)
			}
			d.waitLog(t, "reload rejected; still serving the previous config")
			if got := mustFetch(t, addr, "C0A80102"); got != good {
				t.Errorf("after a rejected reload: %q, want the previous %q", got, good)
			}
		})
	}

	// SIGHUP does the same as `pxebootfs reload`.
	f.write(second, "LABEL second\n  APPEND fsid={{.FSID}} node=<NODE>\n")
	f.write(f.cfg, string(cfg))
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "trigger=signal config=")
	if got := mustFetch(t, addr, "C0A80102"); !strings.Contains(got, "nfsroot=127.0.0.1:"+filepath.Join(f.nodes, "C0A80102")) {
		t.Errorf("after SIGHUP: %q, want the original template", got)
	}
}

// TestAdminNeedsDaemonAndRoot: commands that need the daemon say so, and a
// user other than root is refused with its own exit code.
func TestAdminNeedsDaemonAndRoot(t *testing.T) {
	f := newFullSite(t, "")
	for _, args := range [][]string{{"reset", "C0A80102"}, {"release", "C0A80102"}, {"reload"}} {
		_, errOut, code := f.admin(t, args[0], args[1:]...)
		if code != exitNoDaemon || !strings.Contains(errOut, "no pxebootfs daemon is listening") {
			t.Errorf("%s without a daemon: exit %d, stderr %q", args, code, errOut)
		}
	}
	f.start()
	// nobody must be able to read the config and see the directories it
	// names, to get as far as the socket; state_dir itself stays 0700.
	for _, dir := range []string{f.dir, filepath.Dir(f.state)} {
		for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	bin := filepath.Join(f.dir, "pxebootfs")
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"nodes"}, {"reset", "-force", "C0A80102"}, {"release", "C0A80102"}, {"reload"}} {
		cmd := exec.Command(bin, append([]string{args[0], "-c", f.cfg}, args[1:]...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		code := cmd.ProcessState.ExitCode()
		if err == nil || code != exitPermission || !strings.Contains(string(out), "need root") {
			t.Errorf("%s as nobody: exit %d, output %q; want %d saying root is needed", args, code, out, exitPermission)
		}
	}
}

// TestMetricsScrape fetches a few files through tftpd-hpa and checks the
// counters on the metrics endpoint.
func TestMetricsScrape(t *testing.T) {
	f := newFullSite(t, "metrics_listen = 127.0.0.1:0\n")
	d := f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	d.waitLog(t, `msg="metrics: serving"`)
	m := regexp.MustCompile(`msg="metrics: serving" addr=(\S+)`).FindStringSubmatch(d.stderr.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", d.stderr.String())
	}
	url := "http://" + m[1] + "/metrics"

	mustFetch(t, addr, "C0A80102")
	mustFetch(t, addr, "C0A80102")
	mustFetch(t, addr, "C0A80103")
	mustFetch(t, addr, "default")
	if _, err := fetch(t, addr, "C0A80"); err == nil {
		t.Fatal("C0A80 was served")
	}
	f.mustAdmin(t, "reload")
	f.mustAdmin(t, "reset", "-force", "C0A80103")

	body := scrape(t, url)
	// Whether the kernel NFS server runs is this machine's; the metric
	// and the log must say it as it is.
	up := "1"
	if nfsexport.KernelServer() != nil {
		up = "0"
		d.waitLog(t, "NFS server: not running")
	}
	if !strings.Contains(body, "\npxebootfs_nfs_server_up "+up+"\n") {
		t.Errorf("pxebootfs_nfs_server_up is not %s", up)
	}
	// A tftpd may open a file twice when a client resends its request, so
	// per-fetch counters are lower bounds; per-node ones are exact.
	checks := []struct {
		series  string
		want    float64
		atLeast bool
	}{
		{`pxebootfs_reads_total{kind="node",loader="pxelinux",result="ok"}`, 3, true},
		{`pxebootfs_reads_total{kind="static",loader="pxelinux",result="ok"}`, 1, true},
		{`pxebootfs_reads_total{kind="node",loader="pxelinux",result="error"}`, 0, false},
		{`pxebootfs_lookups_total{loader="pxelinux",result="served"}`, 4, true},
		{`pxebootfs_lookups_total{loader="pxelinux",result="not_found"}`, 1, true},
		{`pxebootfs_renders_total{loader="pxelinux"}`, 3, true}, // each node fetch renders at open (and at stat unless cached)
		{`pxebootfs_provision_duration_seconds_count{result="ok"}`, 2, false},
		{`pxebootfs_provision_duration_seconds_count{result="error"}`, 0, false},
		{`pxebootfs_resets_total{reason="admin",result="ok"}`, 1, false},
		{`pxebootfs_reloads_total{result="ok",trigger="command"}`, 1, false},
		{`pxebootfs_errors_total{kind="provision"}`, 0, false},
		{`pxebootfs_nodes_known`, 2, false},
		{`pxebootfs_nodes_mounted`, 2, false},
		{`pxebootfs_nodes_exported`, 2, false},
	}
	for _, c := range checks {
		v, ok := sample(body, c.series)
		switch {
		case !ok:
			t.Errorf("%s missing from the scrape", c.series)
		case c.atLeast && v < c.want:
			t.Errorf("%s = %v, want at least %v", c.series, v, c.want)
		case !c.atLeast && v != c.want:
			t.Errorf("%s = %v, want %v", c.series, v, c.want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(b)
}

// sample finds a series (name and labels as printed) in a text exposition.
func sample(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f, true
			}
		}
	}
	return 0, false
}

// TestReloadConfigOnly: a config-only daemon has a control socket too, so
// `pxebootfs reload` works there; a broken template is rejected and the old
// one keeps serving. Node commands say there are no nodes.
func TestReloadConfigOnly(t *testing.T) {
	s := newSite(t, "")
	s.start()
	p := filepath.Join(s.mnt, "C0A80102")
	s.write(s.template, "RELOADED <NODE>\n")
	if out, errOut, code := run(t, "reload", "-c", s.cfg); code != 0 {
		t.Fatalf("reload: exit %d\n%s%s", code, out, errOut)
	}
	if b, _ := os.ReadFile(p); string(b) != "RELOADED C0A80102\n" {
		t.Errorf("after reload: %q", b)
	}
	s.write(s.template, "{{.Node")
	if _, _, code := run(t, "reload", "-c", s.cfg); code != exitConfig {
		t.Errorf("reload of a broken template: exit %d, want %d", code, exitConfig)
	}
	if b, _ := os.ReadFile(p); string(b) != "RELOADED C0A80102\n" {
		t.Errorf("after a rejected reload: %q, want the previous content", b)
	}
	if _, errOut, code := run(t, "reset", "-c", s.cfg, "C0A80102"); code == 0 || !strings.Contains(errOut, "config-only") {
		t.Errorf("reset in config-only mode: exit %d, %q", code, errOut)
	}
}
