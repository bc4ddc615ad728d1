package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/fs"
	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/cluster"
	"github.com/pxebootfs/pxebootfs/internal/image"
	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/loader"
	"github.com/pxebootfs/pxebootfs/internal/metrics"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/provision"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

type mountFlags struct {
	dir       string
	debugFUSE bool
	verbose   bool
}

// watchInterval bounds how stale the template and ethers can be: a change
// is served within one interval (plus the 1 s entry cache).
const watchInterval = time.Second

// shutdownGrace is how long exit waits for open files after unmounting.
const shutdownGrace = 5 * time.Second

func runMount(args []string, stdout, stderr io.Writer) int {
	var f mountFlags
	c := newCmdline("mount", "MOUNTPOINT  (the tftpd's pxelinux.cfg directory)", stderr)
	c.BoolVar(&f.debugFUSE, "debug-fuse", false, "log every FUSE request (very verbose)")
	c.BoolVar(&f.verbose, "v", false, "debug logging (also names not served)")
	if code := c.parse(args, 1, 1); code >= 0 {
		return code
	}
	f.dir = c.Arg(0)
	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	logOut := newAsyncWriter(stderr)
	defer logOut.Close() // runs last: every line is written before exit
	log := newLogger(logOut, level)

	cfg, code := c.load()
	if code >= 0 {
		return code
	}
	return serve(f, cfg, log)
}

// serve runs the daemon: everything that can be checked is checked before
// anything is created, and what a failed start created is removed again,
// so a start that fails changes nothing on disk. Each failure is one log
// line and the exit code that says what kind it was.
func serve(f mountFlags, cfg *config.Config, log *slog.Logger) int {
	failed := func(code int, err error) int {
		log.Error("start", "err", err)
		return code
	}
	mounts, err := planMounts(cfg, f.dir)
	if err != nil {
		return failed(exitConfig, err)
	}
	created, code, err := makeDirs(cfg, mounts, f.dir, log)
	if err != nil {
		return failed(code, err)
	}
	started := false
	defer func() {
		// Runs after everything below is closed (defers run last first).
		if !started && len(created) > 0 {
			config.RemoveCreated(created)
			log.Info("start failed; removed the directories it had created", "dirs", created)
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if stopProfile := startCPUProfile(log); stopProfile != nil {
		defer stopProfile()
	}

	// The registry holds every node's record in both modes: roots in full
	// mode, install states in both.
	reg, err := registry.Open(registry.Options{Dir: cfg.StateDir, StartFSID: cfg.StartFSID, MaxNodes: cfg.MaxNodes, Logger: log})
	if err != nil {
		return failed(exitFailure, err)
	}
	defer func() {
		if err := reg.Close(); err != nil {
			log.Warn("close registry", "err", err)
		}
	}()
	met := newMetrics(cfg, mounts)
	// A fresh layer's root is the inventory's or the config's, which the
	// catalogs know; they are built below (they need the provisioner), and
	// before anything is served, which is when a layer is first made.
	var cats catalogList
	rootFor := func(id node.ID) string { return cats.rootOf(id, cfg.Root) }
	var cl *cluster.Cluster // nil: not in a cluster
	if cfg.ClusterEndpoints != nil {
		if cl, err = openCluster(ctx, cfg, true, log); err != nil {
			return failed(exitFailure, err)
		}
		defer func() {
			if err := cl.Close(); err != nil {
				log.Warn("cluster: close", "err", err)
			}
		}()
		met.RegisterCluster(cl.Up)
	}
	prov, closeProv, err := newProvisioner(ctx, cfg, reg, cl, met, rootFor, log)
	if err != nil {
		return failed(exitFailure, err)
	}
	defer closeProv()
	if cl != nil && cfg.RootsDir != "" {
		go followRoots(ctx, cfg, cl, log)
	}
	if cl != nil && cfg.TFTPRoot != "" {
		go followImages(ctx, cfg, cl, log)
	}
	served := &image.Served{}
	cats, inst, err := buildCatalogs(cfg, mounts, reg, cl, prov, served, met, log)
	if err != nil {
		return failed(exitConfig, err)
	}
	ops, err := startOps(ctx, cfg, cats, prov, inst, met, cl, log)
	if err != nil {
		return failed(exitFailure, err)
	}
	defer ops.close()
	if cl != nil && prov != nil {
		go controlHandler{ops}.answerRequests(context.WithoutCancel(ctx), cl.Requests())
	}
	stopImages, err := startImages(ctx, cfg, served, log)
	if err != nil {
		return failed(exitFailure, err)
	}
	defer stopImages()
	if err := mountAll(mounts, ops, f.debugFUSE, log); err != nil {
		return failed(exitFailure, err)
	}
	started = true
	for _, m := range mounts {
		go m.cat.Watch(ctx, watchInterval)
		log.Info("serving", "loader", m.ld.Name, "mountpoint", m.dir, "config", cfg.File, "full_mode", cfg.FullMode(), "version", versionString())
	}
	ops.ready()
	return waitAndUnmount(ctx, mounts, ops, log)
}

// makeDirs checks the directories of cfg and creates the missing ones and
// the missing mount points (as the systemd unit makes them), returning what
// it created, for removal if the start fails. On an error it has removed
// what it created, and code says what kind the error is.
func makeDirs(cfg *config.Config, mounts []*loaderMount, dir string, log *slog.Logger) (created []string, code int, err error) {
	if err := config.CheckDirs(cfg); err != nil {
		return nil, exitConfig, err
	}
	if err := checkImagesOutsideMount(cfg, dir); err != nil {
		return nil, exitConfig, err
	}
	if created, err = config.CreateDirs(cfg); err != nil {
		return nil, exitFailure, err
	}
	for _, m := range mounts {
		top, err := config.MakeDir(m.dir, 0o755)
		if err != nil {
			if len(created) > 0 {
				config.RemoveCreated(created)
				log.Info("start failed; removed the directories it had created", "dirs", created)
			}
			return nil, exitFailure, fmt.Errorf("mount point: %w", err)
		}
		if top != "" {
			log.Info("created the mount point", "loader", m.ld.Name, "dir", m.dir)
			created = append(created, top)
		}
	}
	return created, exitOK, nil
}

// loaderMount is one loader's directory the daemon serves.
type loaderMount struct {
	ld  *loader.Loader
	dir string // the mount point
	cat *catalog.Catalog
	srv *fs.Server // once mounted
}

// planMounts lists the mounts of cfg's loaders: pxelinux at dir (the
// command line's), every other configured loader at its mount key's
// directory (one without is only rendered by `pxebootfs render`). Each
// loader's catalog is loaded once here to check the config before anything
// is created; a failure, or two loaders on one mount point, is a config
// error.
func planMounts(cfg *config.Config, dir string) ([]*loaderMount, error) {
	var mounts []*loaderMount
	seen := map[string]string{}
	for _, lc := range cfg.Loaders() {
		m := &loaderMount{dir: lc.Mount}
		if lc.Keys.Mount == "" {
			m.dir = dir
		}
		if m.dir == "" {
			continue
		}
		c, err := catalogOf(cfg, lc, catalog.Options{})
		if err != nil {
			return nil, err
		}
		m.ld = c.Loader()
		abs, err := filepath.Abs(m.dir)
		if err != nil {
			return nil, fmt.Errorf("mount point %s: %w", m.dir, err)
		}
		if other, dup := seen[abs]; dup {
			return nil, fmt.Errorf("%s: %s and %s are both mounted at %s", cfg.File, mountKey(other), mountKey(m.ld.Name), abs)
		}
		seen[abs] = m.ld.Name
		mounts = append(mounts, m)
	}
	return mounts, nil
}

// catalogOf builds the catalog of lc's loader from cfg with opts. With zero
// opts it only checks that everything that part of cfg names loads.
func catalogOf(cfg *config.Config, lc config.LoaderConfig, opts catalog.Options) (*catalog.Catalog, error) {
	ld, err := loader.ByName(lc.Keys.Loader)
	if err != nil {
		return nil, err
	}
	return catalog.New(ld, cfg, opts)
}

// mountKey names where a loader's mount point comes from, for errors.
func mountKey(name string) string {
	if k := config.KeysOf(name).Mount; k != "" {
		return k
	}
	return "the " + name + " MOUNTPOINT"
}

// buildCatalogs makes each mount's serving catalog, all with the same
// provisioner (a node keeps one root and one fsid whichever loader asks),
// install manager and image ledger, and returns them with the install
// manager.
func buildCatalogs(cfg *config.Config, mounts []*loaderMount, reg *registry.Registry, cl *cluster.Cluster, prov *provision.Provisioner, served *image.Served, met *metrics.Metrics, log *slog.Logger) (catalogList, *install.Manager, error) {
	var p node.Provisioner // stays a nil interface in config-only mode
	if prov != nil {
		p = prov
	}
	// The manager tells the catalogs of install state changes, and the
	// catalogs ask it for install states: it is made first, and reaches
	// the catalogs through cats, filled below before anything is served.
	var cats catalogList
	var store install.Store = reg
	if cl != nil {
		// Install states and tokens are the cluster's: an install on any
		// server, a callback to any server.
		store = cl.Installs(reg, func(id node.ID) { cats.nodeChanged(id) })
	}
	inst := install.New(install.Options{
		Store: store, Dir: cfg.StateDir, CallbackURL: cfg.CallbackURL, MaxBoots: cfg.InstallMaxBoots, Logger: log,
		Metrics: installMetrics(met),
		Changed: func(id node.ID) { cats.nodeChanged(id) },
		Allowed: func(a netip.Addr) bool { return cats.allowed(a) },
	})
	for _, m := range mounts {
		c, err := catalog.New(m.ld, cfg, catalog.Options{Prov: p, Inst: inst, Served: served, Mountpoint: m.dir, Log: log})
		if err != nil {
			return nil, nil, err
		}
		m.cat = c
		cats = append(cats, c)
	}
	return cats, inst, nil
}

// installMetrics is met as the install manager's Metrics: a nil interface,
// not a typed nil, without metrics.
func installMetrics(met *metrics.Metrics) install.Metrics {
	if met == nil {
		return nil
	}
	return met
}

// catalogList is the daemon's catalogs, pxelinux's first.
type catalogList []*catalog.Catalog

// nodeChanged drops what the kernel caches of a node's names in every
// loader's mount.
func (cs catalogList) nodeChanged(id node.ID) {
	for _, c := range cs {
		c.NodeChanged(id)
	}
}

// rootOf is the named root of id (see Catalog.RootOf), def before the
// catalogs exist.
func (cs catalogList) rootOf(id node.ID, def string) string {
	if len(cs) == 0 {
		return def
	}
	return cs[0].RootOf(id)
}

// allowed is the allow list, which every catalog shares.
func (cs catalogList) allowed(a netip.Addr) bool { return len(cs) > 0 && cs[0].Allowed(a) }

// mountAll mounts every loader's directory; if one fails, those already
// mounted are unmounted again.
func mountAll(mounts []*loaderMount, ops *daemonOps, debug bool, log *slog.Logger) error {
	for i, m := range mounts {
		srv, err := fs.Mount(m.dir, ops.sourceOf(m.cat), fs.MountOptions{Debug: debug, Logger: log})
		if err != nil {
			for _, done := range mounts[:i] {
				if cerr := done.srv.Close(); cerr != nil {
					log.Error("unmount", "mountpoint", done.dir, "err", cerr)
				}
			}
			return fmt.Errorf("mount %s at %s: %w", m.ld.Name, m.dir, err)
		}
		m.srv = srv
	}
	return nil
}

// waitAndUnmount serves until a signal, then unmounts every mount; or
// returns when someone unmounted one from outside.
func waitAndUnmount(ctx context.Context, mounts []*loaderMount, ops *daemonOps, log *slog.Logger) int {
	done := make(chan struct{})
	var doneOnce sync.Once
	for _, m := range mounts {
		go func() { m.srv.Wait(); doneOnce.Do(func() { close(done) }) }()
	}
	select {
	case <-ctx.Done():
		ops.stopping()
		log.Info("signal received; unmounting (node roots and exports stay)")
	case <-done:
		// Someone ran umount/fusermount -u on us.
		log.Warn("filesystem was unmounted from outside; exiting")
		return exitOK
	}
	code := exitOK
	// The other loaders first, pxelinux's last, as they were mounted.
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := mounts[i].srv.Close(); err != nil {
			log.Error("unmount", "mountpoint", mounts[i].dir, "err", err)
			code = exitFailure
		}
	}
	if code != exitOK {
		return code
	}
	// After a lazy unmount the server finishes when the last tftpd child
	// closes its file, which can take a minute; do not hold shutdown for it.
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		log.Warn("files still open after lazy unmount; exiting anyway", "waited", shutdownGrace)
	}
	for _, m := range mounts {
		log.Info("unmounted", "mountpoint", m.dir)
	}
	return exitOK
}

// startCPUProfile writes a CPU profile of the daemon to the file named by
// PXEBOOTFS_CPUPROFILE, if set, until it exits: how the benchmarks'
// figures were read (go tool pprof). It returns the function that stops it.
func startCPUProfile(log *slog.Logger) func() {
	path := os.Getenv("PXEBOOTFS_CPUPROFILE")
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		log.Warn("cpu profile", "file", path, "err", err)
		return nil
	}
	log.Info("writing cpu profile", "file", path)
	return func() { pprof.StopCPUProfile(); f.Close() }
}
