package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
	"github.com/pxebootfs/pxebootfs/overlay"
)

// bareFloor is the least that provisioning must do, without the daemon:
// an overlay mount per node (the project's own overlay package, as the
// daemon mounts) and an export per node through exportfs. The benchmarks
// measure it in the same run as the daemon, for their floors: a cold
// fetch beside one bare mount + export, a restore beside bare mounts of
// all nodes + one exportfs -a for all.
type bareFloor struct {
	m     *overlay.Manager
	nodes string
	file  string // its exports file in the private /etc/exports.d
	ids   []node.ID
	// ganesha and ganeshaIDs: the Ganesha that ganeshaBatch exported
	// the floor's nodes through, and their Export_Ids.
	ganesha    *testenv.GaneshaServer
	ganeshaIDs []int
}

// newBareFloor makes a floor whose nodes overlay root (a golden root).
func newBareFloor(b *testing.B, root string) *bareFloor {
	b.Helper()
	base := b.TempDir()
	for _, d := range []string{"node", "overlay"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	m, err := overlay.New(overlay.Options{RootDir: root, NodeDir: filepath.Join(base, "node"), OverlayDir: filepath.Join(base, "overlay")})
	if err != nil {
		b.Fatal(err)
	}
	fl := &bareFloor{m: m, nodes: filepath.Join(base, "node"), file: "/etc/exports.d/zz-floor.exports"}
	b.Cleanup(func() { fl.clear(b) })
	return fl
}

// clear takes back the floor's exports and mounts, so that a floor measured
// now does not weigh on what is measured next.
func (fl *bareFloor) clear(b *testing.B) {
	if _, err := os.Stat(fl.file); err == nil {
		os.Remove(fl.file)
		// -r drops every export no exports file names: ours, and
		// none of the daemon's (all in its own file).
		if out, err := exec.Command("exportfs", "-r").CombinedOutput(); err != nil {
			b.Errorf("exportfs -r: %v: %s", err, out)
		}
	}
	for _, id := range fl.ganeshaIDs {
		if err := fl.ganesha.Call(context.Background(), "RemoveExport", uint16(id)); err != nil {
			b.Errorf("floor cleanup: %v", err)
		}
	}
	fl.ganeshaIDs = nil
	for _, id := range fl.ids {
		if err := fl.m.Unmount(id); err != nil {
			b.Errorf("floor cleanup: %v", err)
		}
	}
	fl.ids = nil
}

// mounts mounts nodes first..first+n-1 one after another, exporting
// nothing (the floor of export = none), and returns how long it took.
func (fl *bareFloor) mounts(b *testing.B, first, n int) time.Duration {
	start := time.Now()
	for i := first; i < first+n; i++ {
		fl.mount(b, i)
	}
	return time.Since(start)
}

// mount mounts the floor's node i and returns its ID.
func (fl *bareFloor) mount(b *testing.B, i int) node.ID {
	id := floorID(i)
	if _, err := fl.m.Mount(id); err != nil {
		b.Fatal(err)
	}
	fl.ids = append(fl.ids, id)
	return id
}

// floorID is node i of the floor, in 172.16/12 so that it never meets the
// daemon's nodes.
func floorID(i int) node.ID { return node.FromUint32(0xAC100000 + uint32(i)) }

func (fl *bareFloor) exportLine(id node.ID, fsid int) (string, string) {
	path := filepath.Join(fl.nodes, id.String())
	opts := config.DefaultExportOptions + fmt.Sprintf(",fsid=%d", fsid)
	return path, opts
}

// one mounts and exports one node with exportfs -o, as an admin's script
// would, and returns how long it took.
func (fl *bareFloor) one(b *testing.B, i int) time.Duration {
	start := time.Now()
	id := fl.mount(b, i)
	path, opts := fl.exportLine(id, 50000+i)
	if out, err := exec.Command("exportfs", "-o", opts, id.Addr().String()+":"+path).CombinedOutput(); err != nil {
		b.Fatalf("exportfs: %v: %s", err, out)
	}
	return time.Since(start)
}

// batch mounts nodes first..first+n-1 one after another, then exports them
// all with one exports file and one exportfs -a, and returns how long it
// took.
func (fl *bareFloor) batch(b *testing.B, first, n int) time.Duration {
	start := time.Now()
	var lines strings.Builder
	for i := first; i < first+n; i++ {
		id := fl.mount(b, i)
		path, opts := fl.exportLine(id, 50000+i)
		fmt.Fprintf(&lines, "%s %s(%s)\n", path, id.Addr(), opts)
	}
	if err := os.WriteFile(fl.file, []byte(lines.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("exportfs", "-a").CombinedOutput(); err != nil {
		b.Fatalf("exportfs -a: %v: %s", err, out)
	}
	return time.Since(start)
}

// ganeshaBatch mounts nodes first..first+n-1 one after another, then
// exports them all through Ganesha as an admin could without pxebootfs: one
// file of EXPORT blocks and one AddExport call for all of them.
// It returns how long it took.
func (fl *bareFloor) ganeshaBatch(b *testing.B, srv *testenv.GaneshaServer, first, n int) time.Duration {
	fl.ganesha = srv
	file := filepath.Join(filepath.Dir(srv.Include), "floor.conf")
	start := time.Now()
	var blocks strings.Builder
	for i := first; i < first+n; i++ {
		id := fl.mount(b, i)
		exportID := 30000 + i // clear of the daemon's fsids
		fl.ganeshaIDs = append(fl.ganeshaIDs, exportID)
		path := filepath.Join(fl.nodes, id.String())
		// Filesystem_Id as pxebootfs gives it: overlayfs has no
		// stable one of its own.
		fmt.Fprintf(&blocks, "EXPORT {\n Export_Id = %d; Path = %q; Pseudo = %q; Filesystem_Id = %d.0; Access_Type = None;\n FSAL { Name = VFS; }\n CLIENT { Clients = %s; Access_Type = RW; }\n}\n",
			exportID, path, path, exportID, id.Addr())
	}
	if err := os.WriteFile(file, []byte(blocks.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := srv.Call(context.Background(), "AddExport", file, "EXPORT(Access_Type=None)"); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
