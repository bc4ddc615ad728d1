package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/node"
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
		id := floorID(i)
		if _, err := fl.m.Mount(id); err != nil {
			b.Fatal(err)
		}
		fl.ids = append(fl.ids, id)
	}
	return time.Since(start)
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
	id := floorID(i)
	start := time.Now()
	if _, err := fl.m.Mount(id); err != nil {
		b.Fatal(err)
	}
	fl.ids = append(fl.ids, id)
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
		id := floorID(i)
		if _, err := fl.m.Mount(id); err != nil {
			b.Fatal(err)
		}
		fl.ids = append(fl.ids, id)
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
