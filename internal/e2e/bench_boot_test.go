package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// What a node's own copy-on-write root costs at boot against the floor
// every admin compares it with: one read-only root exported to the whole
// fleet. Both sides are read by the same in-process NFSv3 clients
// (testenv.DialNFS), each node from its own address, through the same
// NFS-Ganesha, in the same run.

// bootSet is the files a boot reads, as paths relative to the root, and
// their sizes.
type bootSet struct {
	paths []string
	sizes map[string]int64
	bytes int64
}

// bootSetSources are where the set's files come from on this machine (a
// Debian system, as a node's root would be): configuration, libraries,
// programs, udev rules, time zones, in this order.
var bootSetSources = []string{"/etc", "/usr/lib/udev", "/usr/share/zoneinfo", "/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/sbin"}

// Shape of the set: many small files, some medium, a few large, as a
// Debian boot reads (systemd's units and rules, libraries, a few large
// programs and libraries).
const (
	bootSmall, bootSmallMax   = 400, 64 << 10
	bootMedium, bootMediumMax = 60, 1 << 20
	bootLarge, bootLargeMax   = 4, 8 << 20
)

// makeBootSet fills root with the diskless guest's own root (busybox, its
// applets, /sbin/init: what the suite's guest reads at boot) and copies of
// files of this machine's Debian tree, and returns the set: the guest's
// files first, then the copies.
func makeBootSet(b *testing.B, root string) bootSet {
	g := testenv.BuildGuest(b)
	testenv.MakeGoldenRoot(b, g, root)
	set := bootSet{sizes: map[string]int64{}}
	add := func(rel string, size int64) {
		set.paths = append(set.paths, rel)
		set.sizes[rel] = size
		set.bytes += size
	}
	for _, rel := range []string{"sbin/init", "bin/busybox", "etc/golden"} {
		st, err := os.Stat(filepath.Join(root, rel))
		if err != nil {
			b.Fatal(err)
		}
		add(rel, st.Size())
	}
	small, medium, large := 0, 0, 0
	for _, src := range bootSetSources {
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil // unreadable or not a file: not in the set
			}
			info, err := d.Info()
			if err != nil || info.Size() == 0 {
				return nil
			}
			switch s := info.Size(); {
			case s < bootSmallMax && small < bootSmall:
				small++
			case s >= bootSmallMax && s < bootMediumMax && medium < bootMedium:
				medium++
			case s >= bootMediumMax && s < bootLargeMax && large < bootLarge:
				large++
			default:
				return nil
			}
			rel := strings.TrimPrefix(p, "/")
			if _, dup := set.sizes[rel]; dup {
				return nil
			}
			if err := os.MkdirAll(filepath.Join(root, filepath.Dir(rel)), 0o755); err != nil {
				return err
			}
			testenv.CopyFile(b, p, filepath.Join(root, rel))
			add(rel, info.Size())
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if small < bootSmall/2 || medium < bootMedium/2 || large == 0 {
		b.Fatalf("this machine's tree gave a thin boot set: %d small, %d medium, %d large files", small, medium, large)
	}
	return set
}

// bootSite is a full-mode site exporting through Ganesha, its golden root
// holding a boot set, with a node for each peer address and the floor: the
// golden root itself exported read-only to every peer.
type bootSite struct {
	*ganeshaSite
	set   bootSet
	peers []testenv.NFSPeer
	names []string // node of each peer
}

// floorExportID is the Export_Id of the shared root; node exports start at
// the site's start_fsid.
const floorExportID = 9000

func newBootSite(b *testing.B, nodes int) *bootSite {
	f := newGaneshaSiteConfig(b, "198.19.0.0/16", "max_nodes = 20000\n")
	s := &bootSite{ganeshaSite: f, set: makeBootSet(b, f.root)}
	bootSkeleton(b, f.root)
	f.start()
	s.peers = f.srv.AddPeers(b, 0, nodes)
	s.provision(b, 0, nodes)
	addGaneshaBlocks(b, f.srv, "floor.conf", ganeshaBlock(floorExportID, f.root, "198.19.0.0/16", "RO"))
	return s
}

// provision fetches the configs of peers first..first+n-1 through
// tftpd-hpa, 64 at a time: each node gets its root, mounted and exported.
func (s *bootSite) provision(b *testing.B, first, n int) {
	addr := testenv.StartTFTPD(b, s.tftpRoot)
	for _, p := range s.peers[first : first+n] {
		a := p.Client.As4()
		s.names = append(s.names, fmt.Sprintf("%02X%02X%02X%02X", a[0], a[1], a[2], a[3]))
	}
	var g errgroup.Group
	g.SetLimit(64)
	for _, name := range s.names[first : first+n] {
		g.Go(func() error {
			_, err := fetch(b, addr, name)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}

// nodeRoot is peer i's own root.
func (s *bootSite) nodeRoot(i int) string { return filepath.Join(s.nodes, s.names[i]) }

// ganeshaBlock is an EXPORT block of path to clients, as an admin would
// write it without pxebootfs.
func ganeshaBlock(id int, path, clients, access string) string {
	return fmt.Sprintf("EXPORT {\n Export_Id = %d; Path = %q; Pseudo = %q; Protocols = 3, 4; Access_Type = None; Squash = No_Root_Squash;\n FSAL { Name = VFS; }\n CLIENT { Clients = %s; Access_Type = %s; Squash = No_Root_Squash; }\n}\n",
		id, path, path, clients, access)
}

// addGaneshaBlocks writes blocks to file beside Ganesha's export file and
// adds them all with one AddExport over D-Bus.
func addGaneshaBlocks(b *testing.B, srv *testenv.GaneshaServer, file string, blocks ...string) {
	file = filepath.Join(filepath.Dir(srv.Include), file)
	if err := os.WriteFile(file, []byte(strings.Join(blocks, "")), 0o644); err != nil {
		b.Fatal(err)
	}
	// Every block has Access_Type = None at its top level.
	if err := srv.Call(context.Background(), "AddExport", file, "EXPORT(Access_Type=None)"); err != nil {
		b.Fatal(err)
	}
}

// readRun is what N clients reading the boot set measured.
type readRun struct {
	elapsed   time.Duration
	latencies []time.Duration // one per file read
	bytes     int64
}

func (r readRun) mibps() float64 { return float64(r.bytes) / (1 << 20) / r.elapsed.Seconds() }
func (r readRun) p99() time.Duration {
	return percentile(r.latencies, 99)
}

// dialAll mounts root(i) for each of peers idx from its own address.
func (s *bootSite) dialAll(b *testing.B, idx []int, root func(i int) string) []*testenv.NFSClient {
	clients := make([]*testenv.NFSClient, len(idx))
	var g errgroup.Group
	g.SetLimit(16)
	for k, i := range idx {
		g.Go(func() error {
			c, err := testenv.DialNFS(s.srv.Client, s.peers[i], root(i))
			clients[k] = c
			return err
		})
	}
	err := g.Wait()
	b.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	return clients
}

// readAll has every client read the whole set at once, each file whole
// and in order, and checks every size.
func (s *bootSite) readAll(b *testing.B, clients []*testenv.NFSClient) readRun {
	var mu sync.Mutex
	run := readRun{latencies: make([]time.Duration, 0, len(clients)*len(s.set.paths))}
	var g errgroup.Group
	start := time.Now()
	for _, c := range clients {
		g.Go(func() error {
			lat := make([]time.Duration, 0, len(s.set.paths))
			var n int64
			for _, p := range s.set.paths {
				t0 := time.Now()
				data, err := c.ReadFile(p)
				if err != nil {
					return err
				}
				lat = append(lat, time.Since(t0))
				if int64(len(data)) != s.set.sizes[p] {
					return fmt.Errorf("%s: read %d bytes, the file has %d", p, len(data), s.set.sizes[p])
				}
				n += int64(len(data))
			}
			mu.Lock()
			run.latencies = append(run.latencies, lat...)
			run.bytes += n
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	run.elapsed = time.Since(start)
	return run
}

// memory is the server's memory that NFS clients reading roots can grow:
// the page cache and kernel slab (dentries, inodes; overlayfs's own), from
// /proc/meminfo, and ganesha.nfsd's resident set.
type memory struct {
	cachedKiB, slabKiB, ganeshaKiB int64
}

func (m memory) sub(o memory) memory {
	return memory{m.cachedKiB - o.cachedKiB, m.slabKiB - o.slabKiB, m.ganeshaKiB - o.ganeshaKiB}
}

func serverMemory(b *testing.B, ganeshaPID int) memory {
	var m memory
	m.cachedKiB = procKiB(b, "/proc/meminfo", "Cached:")
	m.slabKiB = procKiB(b, "/proc/meminfo", "Slab:")
	m.ganeshaKiB = procKiB(b, fmt.Sprintf("/proc/%d/status", ganeshaPID), "VmRSS:")
	return m
}

// procKiB reads the "KEY: N kB" line of a /proc file.
func procKiB(b *testing.B, file, key string) int64 {
	f, err := os.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("%s: %s: %v", file, sc.Text(), err)
			}
			return v
		}
	}
	b.Fatalf("%s has no %s line", file, key)
	return 0
}

// slabBytes is the bytes of each slab cache's active objects, from
// /proc/slabinfo.
func slabBytes(b *testing.B) map[string]int64 {
	data, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		b.Fatal(err)
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "slabinfo") {
			continue
		}
		objs, err1 := strconv.ParseInt(f[1], 10, 64)
		size, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 == nil && err2 == nil {
			m[f[0]] += objs * size
		}
	}
	return m
}

// slabGrowth names the top caches that grew from before to after.
func slabGrowth(before, after map[string]int64, top int) string {
	type growth struct {
		name string
		d    int64
	}
	var gs []growth
	for name, v := range after {
		if d := v - before[name]; d > 0 {
			gs = append(gs, growth{name, d})
		}
	}
	slices.SortFunc(gs, func(a, b growth) int { return int(b.d - a.d) })
	var parts []string
	for _, g := range gs[:min(top, len(gs))] {
		parts = append(parts, fmt.Sprintf("%s +%.1f MiB", g.name, float64(g.d)/(1<<20)))
	}
	return strings.Join(parts, ", ")
}

// dropCaches writes back and drops the page cache, dentries and inodes, so
// that what a run adds can be measured. (Benchmarks only: it costs every
// process on the machine its cache.)
func dropCaches(b *testing.B) {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		b.Fatal(err)
	}
}

// kv formats key=value pairs in order, floats with two decimals.
func kv(pairs ...any) string {
	var parts []string
	for i := 0; i+1 < len(pairs); i += 2 {
		v := pairs[i+1]
		if f, ok := v.(float64); ok {
			v = strconv.FormatFloat(f, 'f', 2, 64)
		}
		parts = append(parts, fmt.Sprintf("%v=%v", pairs[i], v))
	}
	return strings.Join(parts, " ")
}

// span returns the peers first..first+n-1.
func span(first, n int) []int {
	idx := make([]int, n)
	for k := range idx {
		idx[k] = first + k
	}
	return idx
}

// BenchmarkBootReads: N = 1, 16 and 64 nodes each read a boot set (the
// guest's root and several hundred files of this machine's Debian tree)
// from its own pxebootfs root, against the floor: the same clients reading
// the same set from one read-only export of the golden root. Each N uses
// nodes no earlier N used. Cold (caches dropped, once per side: the
// server memory each side adds) then warm (best of interleaved rounds:
// throughput and p99 per-file latency). One line per N; the last adds what
// grows per extra node.
//
//	go test -run '^$' -bench BootReads -benchtime 1x ./internal/e2e
func BenchmarkBootReads(b *testing.B) {
	sizes := []int{1, 16, 64}
	total := 0
	for _, n := range sizes {
		total += n
	}
	for i := 0; i < b.N; i++ {
		s := newBootSite(b, total)
		pid := s.srv.PID()
		b.Logf("boot set: %d files, %.1f MiB", len(s.set.paths), float64(s.set.bytes)/(1<<20))
		grow := map[int]memory{}
		first := 0
		for _, n := range sizes {
			idx := span(first, n)
			first += n
			floorC := s.dialAll(b, idx, func(int) string { return s.root })
			ownC := s.dialAll(b, idx, s.nodeRoot)

			dropCaches(b)
			m0 := serverMemory(b, pid)
			floorCold := s.readAll(b, floorC)
			m1 := serverMemory(b, pid)
			dropCaches(b)
			m2, slab2 := serverMemory(b, pid), slabBytes(b)
			ownCold := s.readAll(b, ownC)
			m3 := serverMemory(b, pid)
			b.Logf("%d nodes' own roots grew the slab caches: %s", n, slabGrowth(slab2, slabBytes(b), 6))
			floorMem, ownMem := m1.sub(m0), m3.sub(m2)
			grow[n] = ownMem

			var floorWarm, ownWarm readRun
			for r := 0; r < warmRounds; r++ {
				if f := s.readAll(b, floorC); r == 0 || f.elapsed < floorWarm.elapsed {
					floorWarm = f
				}
				if o := s.readAll(b, ownC); r == 0 || o.elapsed < ownWarm.elapsed {
					ownWarm = o
				}
			}
			line := kv("boot-reads nodes", n, "files", len(s.set.paths), "set_mib", float64(s.set.bytes)/(1<<20),
				"throughput_mibs", ownWarm.mibps(), "floor_mibs", floorWarm.mibps(), "throughput_ratio", ownWarm.mibps()/floorWarm.mibps(),
				"p99_ms", ms(ownWarm.p99()), "floor_p99_ms", ms(floorWarm.p99()), "p99_ratio", float64(ownWarm.p99())/float64(floorWarm.p99()),
				"cold_ratio", ownCold.mibps()/floorCold.mibps(),
				"cache_mib", float64(ownMem.cachedKiB)/1024, "floor_cache_mib", float64(floorMem.cachedKiB)/1024,
				"slab_mib", float64(ownMem.slabKiB)/1024, "floor_slab_mib", float64(floorMem.slabKiB)/1024,
				"ganesha_mib", float64(ownMem.ganeshaKiB)/1024, "floor_ganesha_mib", float64(floorMem.ganeshaKiB)/1024)
			if n == sizes[len(sizes)-1] {
				// What of it is cache the kernel gives back under
				// pressure: dentries and inodes dropped, the slab left.
				if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2\n"), 0o200); err != nil {
					b.Fatal(err)
				}
				line += " " + kv("slab_after_reclaim_mib", float64(serverMemory(b, pid).slabKiB-m2.slabKiB)/1024)
				// Growth per extra node: what n nodes added beyond one.
				per := func(f func(memory) int64) float64 {
					return float64(f(grow[n])-f(grow[1])) / float64(n-1)
				}
				line += " " + kv("cache_per_node_kib", per(func(m memory) int64 { return m.cachedKiB }),
					"slab_per_node_kib", per(func(m memory) int64 { return m.slabKiB }),
					"ganesha_per_node_kib", per(func(m memory) int64 { return m.ganeshaKiB }))
			}
			fmt.Println(line)
		}
		b.ReportMetric(0, "ns/op")
	}
}

// The writes of a booting node (logs, /var/lib, /tmp): appends to a log
// its golden root already holds, new small files, files written in /tmp
// and renamed over state in /var/lib, and one larger file, each closed
// with a COMMIT (go-nfs-client writes FILE_SYNC too): 74 operations.
const (
	bootLog                = "var/log/syslog"
	bootLogSize            = 16 << 10
	bootAppends, appendLen = 32, 200
	bootFiles, bootFileLen = 24, 2 << 10
	bootRenames, renameLen = 16, 4 << 10
	bootJournalLen         = 1 << 20
	bootWriteOps           = bootAppends + 1 + bootFiles + bootRenames + 1
	bootWriteBytes         = bootAppends*appendLen + bootFiles*bootFileLen + bootRenames*renameLen + bootJournalLen
)

// bootSkeleton gives root what a node's writes expect to find: the log,
// /tmp and /var/lib.
func bootSkeleton(b *testing.B, root string) {
	for _, d := range []string{"tmp", "var/log", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, bootLog), []byte(strings.Repeat("x", bootLogSize)), 0o644); err != nil {
		b.Fatal(err)
	}
}

// bootWrites does a node's boot writes through c.
func bootWrites(c *testenv.NFSClient) error {
	write := func(path string, off int64, data []byte) error {
		f, err := c.OpenFile(path, 0o644)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		if _, err := f.Seek(off, 0); err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("commit %s: %w", path, err)
		}
		return nil
	}
	line := []byte(strings.Repeat("l", appendLen-1) + "\n")
	for i := range bootAppends {
		if err := write(bootLog, int64(bootLogSize+i*appendLen), line); err != nil {
			return err
		}
	}
	if _, err := c.Mkdir("var/lib/bench", 0o755); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	small := make([]byte, bootFileLen)
	for i := range bootFiles {
		if err := write(fmt.Sprintf("var/lib/bench/f-%d", i), 0, small); err != nil {
			return err
		}
	}
	state := make([]byte, renameLen)
	for i := range bootRenames {
		tmp := fmt.Sprintf("tmp/.state-%d", i)
		if err := write(tmp, 0, state); err != nil {
			return err
		}
		if err := c.Rename(tmp, "var/lib/bench/state"); err != nil {
			return fmt.Errorf("rename %s: %w", tmp, err)
		}
	}
	return write("var/log/journal", 0, make([]byte, bootJournalLen))
}

// writeAll has every client do its boot writes at once; it returns how
// long they took.
func writeAll(b *testing.B, clients []*testenv.NFSClient) time.Duration {
	var g errgroup.Group
	start := time.Now()
	for _, c := range clients {
		g.Go(func() error { return bootWrites(c) })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// checkWrites checks what a node's boot writes left in root.
func checkWrites(b *testing.B, root string) {
	for path, size := range map[string]int64{bootLog: bootLogSize + bootAppends*appendLen, "var/lib/bench/state": renameLen, "var/log/journal": bootJournalLen} {
		if st, err := os.Stat(filepath.Join(root, path)); err != nil || st.Size() != size {
			b.Fatalf("%s/%s after the boot writes: %v, want %d bytes", root, path, err, size)
		}
	}
}

// BenchmarkBootWrites: N = 1, 16 and 64 nodes each do a boot's writes into
// its own pxebootfs root, against the floor: the same clients writing into
// N plain directories with the same files, on the filesystem the overlays'
// upper layers are on, each exported through the same Ganesha to its node
// alone. Every round uses nodes and directories not written before; best
// of interleaved rounds. One line per N.
//
//	go test -run '^$' -bench BootWrites -benchtime 1x ./internal/e2e
func BenchmarkBootWrites(b *testing.B) {
	sizes := []int{1, 16, 64}
	const rounds = 2
	total := 0
	for _, n := range sizes {
		total += n * rounds
	}
	for i := 0; i < b.N; i++ {
		s := newBootSite(b, total)
		plain := filepath.Join(filepath.Dir(s.overlays), "plain")
		var blocks []string
		for k, name := range s.names {
			dir := filepath.Join(plain, name)
			bootSkeleton(b, dir)
			blocks = append(blocks, ganeshaBlock(20000+k, dir, s.peers[k].Client.String(), "RW"))
		}
		addGaneshaBlocks(b, s.srv, "plain.conf", blocks...)
		first := 0
		for _, n := range sizes {
			var own, floor time.Duration
			for r := range rounds {
				idx := span(first, n)
				first += n
				floorC := s.dialAll(b, idx, func(i int) string { return filepath.Join(plain, s.names[i]) })
				ownC := s.dialAll(b, idx, s.nodeRoot)
				fd, od := writeAll(b, floorC), writeAll(b, ownC)
				if r == 0 || fd < floor {
					floor = fd
				}
				if r == 0 || od < own {
					own = od
				}
				checkWrites(b, filepath.Join(plain, s.names[idx[0]]))
				checkWrites(b, s.nodeRoot(idx[0]))
			}
			opsRate := func(d time.Duration) float64 { return float64(n*bootWriteOps) / d.Seconds() }
			fmt.Println(kv("boot-writes nodes", n, "ops_per_node", bootWriteOps, "kib_per_node", bootWriteBytes>>10,
				"ops_per_s", opsRate(own), "floor_ops_per_s", opsRate(floor), "write_ratio", opsRate(own)/opsRate(floor),
				"s", own.Seconds(), "floor_s", floor.Seconds()))
		}
		// The golden root is never written: every write landed in a
		// node's upper layer.
		if st, err := os.Stat(filepath.Join(s.root, bootLog)); err != nil || st.Size() != bootLogSize {
			b.Fatalf("golden %s: %v, size %d", bootLog, err, st.Size())
		}
		b.ReportMetric(0, "ns/op")
	}
}

// BenchmarkExportScale: what an exported node costs the server idle, and
// what a booted one costs. Idle: ganesha.nfsd's resident memory and open
// files, the kernel's slab and the page cache with 100, 1,000 and 5,000
// pxebootfs nodes provisioned (mounted and exported), none read. Booted (a
// fresh server): 100 nodes exported, then each reads the guest's boot
// files (busybox, init) and the first small files of the boot set from its
// own root; then the same at 1,000. Per node is the growth from the
// previous step divided by the nodes it added.
//
// Ganesha holds an open file per exported root and per file it has read
// (its FD cache, sized from its open file limit: 20,000 on these machines,
// which a test cannot raise): with 5,000 exports it ran out (EMFILE,
// "Futility count exceeded") after about 600 booted nodes, which is why
// the two are measured apart; the README says what to set.
//
//	go test -run '^$' -bench ExportScale -benchtime 1x -timeout 60m ./internal/e2e
func BenchmarkExportScale(b *testing.B) {
	const light = 24 // files each node reads: the guest's, then small ones
	var line []any
	b.Run("idle", func(b *testing.B) {
		e := newScaleRun(b, 5000, light)
		for _, n := range []int{100, 1000, 5000} {
			e.export(b, n)
			e.step(b, "exported", n)
		}
		line = append(line, "ganesha_mib_5000", float64(e.prev.ganeshaKiB)/1024, "ganesha_open_files_5000", e.prevFDs)
		line = append(line, e.line...)
	})
	b.Run("booted", func(b *testing.B) {
		e := newScaleRun(b, 1000, light)
		for _, n := range []int{100, 1000} {
			e.export(b, n)
			e.step(b, "exported", n)
			e.boot(b, n)
			e.step(b, "booted", n)
		}
		line = append(line, e.line...)
	})
	fmt.Println(kv(append([]any{"export-scale exports", 5000}, line...)...))
}

// scaleRun is one server of BenchmarkExportScale and what it measured.
type scaleRun struct {
	*bootSite
	pid          int
	prev         memory
	prevFDs      int
	done, booted int // nodes exported, booted so far
	lastN        int // nodes the last export or boot added
	readBytes    int64
	line         []any
}

func newScaleRun(b *testing.B, nodes, light int) *scaleRun {
	f := newGaneshaSiteConfig(b, "198.19.0.0/16", "max_nodes = 20000\n")
	s := &bootSite{ganeshaSite: f, set: makeBootSet(b, f.root)}
	f.start()
	s.peers = f.srv.AddPeers(b, 0, nodes)
	full := s.set
	s.set.paths = full.paths[:light]
	e := &scaleRun{bootSite: s, pid: f.srv.PID()}
	for _, p := range s.set.paths {
		e.readBytes += full.sizes[p]
	}
	dropCaches(b)
	e.prev, e.prevFDs = serverMemory(b, e.pid), openFiles(b, e.pid)
	return e
}

// export provisions nodes up to n.
func (e *scaleRun) export(b *testing.B, n int) {
	t0 := time.Now()
	e.provision(b, e.done, n-e.done)
	b.Logf("provisioned nodes %d..%d in %.1f s", e.done, n-1, time.Since(t0).Seconds())
	e.lastN, e.done = n-e.done, n
}

// boot has nodes up to n read the light set, 64 at a time, as a boot
// storm's nodes would.
func (e *scaleRun) boot(b *testing.B, n int) {
	for from := e.booted; from < n; from += 64 {
		cs := e.dialAll(b, span(from, min(64, n-from)), e.nodeRoot)
		e.readAll(b, cs)
		for _, c := range cs {
			c.Close()
		}
	}
	b.Logf("nodes %d..%d booted: %d files, %.1f MiB each", e.booted, n-1, len(e.set.paths), float64(e.readBytes)/(1<<20))
	e.lastN, e.booted = n-e.booted, n
}

// step measures the growth since the last step, per node it added.
func (e *scaleRun) step(b *testing.B, what string, n int) {
	m, fds := serverMemory(b, e.pid), openFiles(b, e.pid)
	d := m.sub(e.prev)
	per := float64(e.lastN)
	g, sl, c := float64(d.ganeshaKiB)/per, float64(d.slabKiB)/per, float64(d.cachedKiB)/per
	fdPer := float64(fds-e.prevFDs) / per
	e.line = append(e.line, fmt.Sprintf("%s_%d_ganesha_kib_per_node", what, n), g, fmt.Sprintf("%s_%d_slab_kib_per_node", what, n), sl,
		fmt.Sprintf("%s_%d_ganesha_files_per_node", what, n), fdPer)
	b.Logf("%d %s: ganesha %.0f MiB, %d open files; slab %.0f MiB; per node: ganesha %.1f KiB, %.2f files, slab %.1f KiB, cache %.1f KiB",
		n, what, float64(m.ganeshaKiB)/1024, fds, float64(m.slabKiB)/1024, g, fdPer, sl, c)
	e.prev, e.prevFDs = m, fds
}

// openFiles counts the files process pid has open.
func openFiles(b *testing.B, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		b.Fatal(err)
	}
	return len(ents)
}

// benchInit is the golden root's /sbin/init in BenchmarkBootGuests: it
// reads the boot set, as a boot reads its files, and prints how long the
// guest's kernel has run. It writes nothing, so that the same root can be
// shared read-only.
const benchInit = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
find /etc /usr -type f -exec cat {} + >/dev/null
echo "pxebootfs-bench: read the boot set at uptime $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
`

// floorTemplate boots the guests from the shared root instead of their own.
func floorTemplate(root string) string {
	return strings.Replace(disklessTemplate, "pxb.root={{.NodeDir}}", "pxb.root="+root, 1)
}

// BenchmarkBootGuests: two QEMU guests (TCG) boot at once, iPXE ->
// pxelinux -> Linux, whose init reads the boot set from its NFS root and
// powers off; from their own pxebootfs roots, and (the floor) from one
// read-only Ganesha export of the golden root with the same kernel and
// initrd (the template switched by a reload). Best of interleaved rounds,
// from QEMU's start to the init's line; no assertion: TCG is slow, but
// both sides run on it.
//
//	go test -run '^$' -bench BootGuests -benchtime 1x ./internal/e2e
func BenchmarkBootGuests(b *testing.B) {
	const rounds = 2
	const marker = "pxebootfs-bench: read the boot set"
	for i := 0; i < b.N; i++ {
		guest := testenv.BuildGuest(b)
		f := newGaneshaSiteAllow(b, "10.77.0.0/24")
		makeBootSet(b, f.root)
		if err := os.WriteFile(filepath.Join(f.root, "sbin", "init"), []byte(benchInit), 0o755); err != nil {
			b.Fatal(err)
		}
		testenv.InstallPXELinux(b, f.tftpRoot)
		for src, dst := range map[string]string{guest.Kernel: "vmlinuz", guest.Initrd: "initrd.gz"} {
			testenv.CopyFile(b, src, filepath.Join(f.tftpRoot, dst))
		}
		f.start()
		addGaneshaBlocks(b, f.srv, "floor.conf", ganeshaBlock(floorExportID, f.root, "10.77.0.0/24", "RO"))
		boot := guestBooter(b, f)
		// bootBoth boots A and B at once and returns the slower's time.
		bootBoth := func(template string) time.Duration {
			f.write(f.template, template)
			if _, errOut, code := run(b, "reload", "-c", f.cfg); code != 0 {
				b.Fatalf("reload: exit %d: %s", code, errOut)
			}
			start := time.Now()
			qs := []*testenv.QEMU{boot(guestA), boot(guestB)}
			for _, q := range qs {
				q.WaitFor(b, marker, bootTimeout)
				q.Wait(b, time.Minute)
			}
			d := time.Since(start)
			for _, q := range qs {
				b.Logf("%s", q.Lines(marker))
			}
			return d
		}
		var own, floor time.Duration
		for r := 0; r < rounds; r++ {
			own = best(own, bootBoth(disklessTemplate))
			floor = best(floor, bootBoth(floorTemplate(f.root)))
		}
		fmt.Println(kv("boot-guests guests", 2, "own_root_s", own.Seconds(), "shared_root_s", floor.Seconds(), "boot_ratio", own.Seconds()/floor.Seconds()))
		b.ReportMetric(0, "ns/op")
	}
}
