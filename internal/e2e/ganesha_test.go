package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
	"github.com/pxebootfs/pxebootfs/nfsexport"
)

// A diskless node's whole path over real NFS: its pxelinux config through
// tftpd-hpa, then its root through NFS-Ganesha with a userspace NFS client
// (the kernel here has no NFS server or client). Ganesha runs in a network
// namespace of its own (see testenv.StartGanesha): a client there connects
// from 127.0.0.1, node 7F000001, and one in the second namespace from
// testenv.GaneshaClientAddr.

// ganeshaSite is a full-mode site exporting through Ganesha.
type ganeshaSite struct {
	*site
	srv                          *testenv.GaneshaServer
	ex                           *nfsexport.Ganesha // the test's own view of Ganesha
	root, nodes, overlays, state string
}

func newGaneshaSite(t *testing.T) *ganeshaSite {
	t.Helper()
	return newGaneshaSiteAllow(t, "127.0.0.0/8, "+netip.PrefixFrom(testenv.GaneshaClientAddr, 24).Masked().String())
}

// newGaneshaSiteAllow is newGaneshaSite serving the nodes of allow.
func newGaneshaSiteAllow(t testing.TB, allow string) *ganeshaSite {
	t.Helper()
	return newGaneshaSiteConfig(t, allow, "")
}

// newGaneshaSiteConfig is newGaneshaSiteAllow with more config lines.
func newGaneshaSiteConfig(t testing.TB, allow, extra string) *ganeshaSite {
	t.Helper()
	srv := testenv.StartGanesha(t)
	base := t.TempDir()
	f := &ganeshaSite{
		srv:      srv,
		root:     filepath.Join(base, "root"),
		nodes:    filepath.Join(base, "node"),
		overlays: filepath.Join(base, "overlay"),
		state:    filepath.Join(base, "state"),
	}
	ex, err := nfsexport.NewGanesha(nfsexport.GaneshaOptions{ConfigFile: srv.Include, Bus: srv.Bus})
	if err != nil {
		t.Fatal(err)
	}
	f.ex = ex
	t.Cleanup(func() { ex.Close() })
	if err := os.MkdirAll(filepath.Join(f.root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root, "etc", "golden"), []byte("golden\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.site = newSite(t, fmt.Sprintf("node_dir: %s\nroot_dir: %s\noverlay_dir: %s\nstart_fsid: 10000\nstate_dir = %s\n"+
		"allow = %s\nexport = ganesha\nganesha_config = %s\nganesha_dbus = %s\n%s",
		f.nodes, f.root, f.overlays, f.state, allow, srv.Include, srv.Bus, extra))
	f.write(f.template, fullTemplate)
	// Runs after the daemon's cleanup and before Ganesha's.
	t.Cleanup(func() { f.cleanupNodes(t) })
	return f
}

// cleanupNodes unexports and unmounts every node root the test made: the
// daemon leaves them in place on purpose, and an exported overlay cannot be
// unmounted. More than bulkCleanup exports (a benchmark's) are left to
// Ganesha's own end, which comes next: their overlays are detached lazily,
// and the kernel lets them go when Ganesha exits.
func (f *ganeshaSite) cleanupNodes(t testing.TB) {
	ctx := context.Background()
	if exps := f.exports(t); len(exps) <= bulkCleanup {
		for _, e := range exps {
			if err := f.ex.Unexport(ctx, e); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(f.nodes))
	for _, m := range infos {
		if err := syscall.Unmount(m.Mountpoint, syscall.MNT_DETACH); err != nil {
			t.Errorf("cleanup unmount %s: %v", m.Mountpoint, err)
		}
	}
}

// exports returns Ganesha's exports of node roots, by path.
func (f *ganeshaSite) exports(t testing.TB) map[string]nfsexport.Export {
	t.Helper()
	list, err := f.ex.List(context.Background())
	if err != nil {
		t.Error(err)
		return nil
	}
	m := map[string]nfsexport.Export{}
	for _, e := range list {
		if strings.HasPrefix(e.Path, f.nodes+"/") {
			m[e.Path] = e
		}
	}
	return m
}

// nfsrootRE finds the root a pxelinux config gives the kernel.
var nfsrootRE = regexp.MustCompile(`nfsroot=([0-9.]+):(\S+)`)

// nodeRoot fetches node's config through tftpd-hpa and returns the NFS
// path it names.
func nodeRoot(t *testing.T, addr, node string) string {
	t.Helper()
	cfg, err := fetch(t, addr, node)
	if err != nil {
		t.Fatal(err)
	}
	m := nfsrootRE.FindStringSubmatch(string(cfg))
	if m == nil {
		t.Fatalf("config of %s has no nfsroot=IP:PATH:\n%s", node, cfg)
	}
	return m[2]
}

// nfsRefused checks that a read is refused for lack of access, not for
// some unrelated failure that would prove nothing.
func nfsRefused(t *testing.T, who string, data []byte, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s read %q: the export is not restricted to its node", who, data)
	} else if !strings.Contains(err.Error(), "ACCES") {
		t.Errorf("%s was refused, but not for access: %v", who, err)
	}
}

func TestGaneshaEndToEnd(t *testing.T) {
	f := newGaneshaSite(t)
	d := f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	loop := netip.MustParseAddr("127.0.0.1")
	node1, node1Dir := "7F000001", filepath.Join(f.nodes, "7F000001")
	client2 := testenv.GaneshaClientAddr
	node2 := fmt.Sprintf("%02X%02X%02X%02X", client2.As4()[0], client2.As4()[1], client2.As4()[2], client2.As4()[3])

	// 1. Node 1 (127.0.0.1) gets its config through tftpd-hpa.
	root1 := nodeRoot(t, addr, node1)
	if root1 != node1Dir {
		t.Fatalf("nfsroot path %s, want %s", root1, node1Dir)
	}

	// 2. It mounts that root over NFS, lists it and reads a golden file.
	names, err := f.srv.NS.NFSList(t, loop, root1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, "etc") {
		t.Errorf("nfs-ls %s = %q, want etc in it", root1, names)
	}
	if data, err := f.srv.NS.NFSRead(t, loop, root1+"/etc/golden"); err != nil || string(data) != "golden\n" {
		t.Fatalf("read golden file over NFS: %q, %v", data, err)
	}

	// 3. What it writes lands in its own writable layer only.
	written := []byte("written by node 1 over NFS\n")
	if err := f.srv.NS.NFSCreate(t, loop, root1+"/etc/written", written); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(f.overlays, node1, "upper", "etc", "written")); err != nil || string(data) != string(written) {
		t.Errorf("node 1's upper dir has %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(f.root, "etc", "written")); !os.IsNotExist(err) {
		t.Errorf("the golden root got the file: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(f.root, "etc", "golden")); string(data) != "golden\n" {
		t.Errorf("golden root changed: %q", data)
	}

	// 4. Node 2, from its own address, reads its root; neither node can
	// read the other's.
	root2 := nodeRoot(t, addr, node2)
	if data, err := f.srv.Client.NFSRead(t, testenv.GaneshaServerAddr, root2+"/etc/golden"); err != nil || string(data) != "golden\n" {
		t.Fatalf("node 2 reads its own root: %q, %v", data, err)
	}
	data, err := f.srv.NS.NFSRead(t, loop, root2+"/etc/golden")
	nfsRefused(t, "node 1 (127.0.0.1) reading node 2's root", data, err)
	data, err = f.srv.Client.NFSRead(t, testenv.GaneshaServerAddr, root1+"/etc/written")
	nfsRefused(t, "node 2 ("+client2.String()+") reading node 1's root", data, err)

	before := f.exports(t)
	reg := (&fullSite{state: f.state}).registry(t)
	for _, n := range reg.Nodes {
		p := filepath.Join(f.nodes, n.Node)
		if e := before[p]; e.FSID != n.FSID || e.Client.String() != n.IP {
			t.Errorf("Ganesha exports %s as %+v, want Export_Id %d for %s alone", p, e, n.FSID, n.IP)
		}
	}
	if len(before) != 2 || len(reg.Nodes) != 2 {
		t.Fatalf("exports %v, registry %+v; want two nodes", before, reg)
	}

	// 5. Restart both: Ganesha exports the nodes again from its managed
	// file, before pxebootfs is back, and pxebootfs restores them as they
	// were.
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	f.srv.Restart(t)
	if data, err := f.srv.NS.NFSRead(t, loop, root1+"/etc/written"); err != nil || string(data) != string(written) {
		t.Fatalf("after a Ganesha restart node 1 reads %q, %v", data, err)
	}
	f.start()
	if data, err := f.srv.NS.NFSRead(t, loop, root1+"/etc/written"); err != nil || string(data) != string(written) {
		t.Errorf("after both restarted node 1 reads %q, %v", data, err)
	}
	if after := f.exports(t); !maps.Equal(after, before) {
		t.Errorf("exports changed across the restart:\nbefore %v\nafter  %v", before, after)
	}
	data, err = f.srv.NS.NFSRead(t, loop, root2+"/etc/golden")
	nfsRefused(t, "node 1 reading node 2's root after the restart", data, err)
}

// TestGaneshaRestore: nodes whose export, or overlay and export, went away
// while pxebootfs was down are restored at its start with the same
// Export_Ids, and their data is intact.
func TestGaneshaRestore(t *testing.T) {
	ctx := context.Background()
	f := newGaneshaSite(t)
	d := f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	loop := netip.MustParseAddr("127.0.0.1")
	client2 := testenv.GaneshaClientAddr
	node2 := fmt.Sprintf("%02X%02X%02X%02X", client2.As4()[0], client2.As4()[1], client2.As4()[2], client2.As4()[3])
	root1, root2 := nodeRoot(t, addr, "7F000001"), nodeRoot(t, addr, node2)
	if err := f.srv.NS.NFSCreate(t, loop, root1+"/kept", []byte("node 1 data\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Client.NFSCreate(t, testenv.GaneshaServerAddr, root2+"/kept", []byte("node 2 data\n")); err != nil {
		t.Fatal(err)
	}
	before := f.exports(t)
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	// Node 1 loses its export; node 2 its export and then its overlay
	// (an exported overlay cannot be unmounted).
	for _, p := range []string{root1, root2} {
		if err := f.ex.Unexport(ctx, before[p]); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Unmount(root2, 0); err != nil {
		t.Fatal(err)
	}
	if len(f.exports(t)) != 0 {
		t.Fatalf("exports left: %v", f.exports(t))
	}

	f.start()
	if after := f.exports(t); !maps.Equal(after, before) {
		t.Errorf("restored exports differ:\nbefore %v\nafter  %v", before, after)
	}
	if data, err := f.srv.NS.NFSRead(t, loop, root1+"/kept"); err != nil || string(data) != "node 1 data\n" {
		t.Errorf("node 1 reads %q, %v", data, err)
	}
	if data, err := f.srv.Client.NFSRead(t, testenv.GaneshaServerAddr, root2+"/kept"); err != nil || string(data) != "node 2 data\n" {
		t.Errorf("node 2 reads %q, %v", data, err)
	}
}

// TestGaneshaReboot: after a reboot Ganesha may start before pxebootfs has
// mounted the nodes' overlays again, and then exports the empty directories
// under them. pxebootfs, starting after it, exports the overlays instead.
func TestGaneshaReboot(t *testing.T) {
	f := newGaneshaSite(t)
	d := f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	loop := netip.MustParseAddr("127.0.0.1")
	root := nodeRoot(t, addr, "7F000001")
	if err := f.srv.NS.NFSCreate(t, loop, root+"/kept", []byte("node data\n")); err != nil {
		t.Fatal(err)
	}
	before := f.exports(t)

	// The reboot: both stop, the overlay goes, Ganesha comes back first.
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	f.srv.Stop(t)
	if err := syscall.Unmount(root, 0); err != nil {
		t.Fatal(err)
	}
	f.srv.Start(t)
	if names, err := f.srv.NS.NFSList(t, loop, root); err != nil || len(names) != 0 {
		t.Fatalf("before pxebootfs is back Ganesha shows %q, %v; want the empty directory under the overlay", names, err)
	}

	d = f.start()
	if data, err := f.srv.NS.NFSRead(t, loop, root+"/kept"); err != nil || string(data) != "node data\n" {
		t.Errorf("after pxebootfs restored the node it reads %q, %v", data, err)
	}
	if after := f.exports(t); !maps.Equal(after, before) {
		t.Errorf("exports differ:\nbefore %v\nafter  %v", before, after)
	}
	d.waitLog(t, "re-added")
}

// TestGaneshaCheck: `pxebootfs check` reports whether Ganesha answers.
func TestGaneshaCheck(t *testing.T) {
	f := newGaneshaSite(t)
	for _, d := range []string{f.nodes, f.overlays} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, _, code := run(t, "check", "-c", f.cfg); code != 0 || strings.Contains(out, "export ganesha") {
		t.Errorf("check with Ganesha running: exit %d:\n%s", code, out)
	}
	f.srv.Stop(t)
	out, _, code := run(t, "check", "-c", f.cfg)
	if code != exitFailure || !strings.Contains(out, "export ganesha: ganesha is not reachable") || !strings.Contains(out, f.srv.Bus) {
		t.Errorf("check with Ganesha stopped: exit %d:\n%s", code, out)
	}
	f.srv.Start(t)
}
