package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/metrics"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/provision"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

type mountFlags struct {
	config    string
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
	fl := newFlagSet("mount", "MOUNTPOINT", stderr)
	fl.StringVar(&f.config, "c", "", configFlagHelp)
	fl.BoolVar(&f.debugFUSE, "debug-fuse", false, "log every FUSE request (very verbose)")
	fl.BoolVar(&f.verbose, "v", false, "debug logging (also names not served)")
	if code := parseFlags(fl, args); code >= 0 {
		return code
	}
	if fl.NArg() != 1 {
		fmt.Fprintln(stderr, "pxebootfs mount: need exactly one MOUNTPOINT (the tftpd's pxelinux.cfg directory)")
		return exitUsage
	}
	f.dir = fl.Arg(0)
	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	logOut := newAsyncWriter(stderr)
	defer logOut.Close() // runs last: every line is written before exit
	log := newLogger(logOut, level)

	cfg, code := loadConfig(f.config, stderr)
	if code >= 0 {
		return code
	}
	// Everything that can be checked is checked before anything is
	// created, and what a failed start created is removed again: a start
	// that fails changes nothing on disk.
	cat, err := catalog.New(cfg, nil, log)
	if err != nil {
		log.Error("start", "err", err)
		return exitConfig
	}
	if err := config.CheckDirs(cfg); err != nil {
		log.Error("start", "err", err)
		return exitConfig
	}
	if err := checkImagesOutsideMount(cfg, f.dir); err != nil {
		log.Error("start", "err", err)
		return exitConfig
	}
	var grubCat *catalog.Catalog // GRUB's directory; nil without grub_mount
	if cfg.GrubMount != "" {
		if grubCat, err = catalog.NewGRUB(cfg, nil, log); err != nil {
			log.Error("start", "err", err)
			return exitConfig
		}
		if abs, _ := filepath.Abs(f.dir); abs == cfg.GrubMount {
			log.Error("start", "err", fmt.Errorf("%s: grub_mount %s is the pxelinux.cfg mount point", cfg.File, cfg.GrubMount))
			return exitConfig
		}
	}
	created, err := config.CreateDirs(cfg)
	if err != nil {
		log.Error("start", "err", err)
		return exitFailure
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
		log.Error("start", "err", err)
		return exitFailure
	}
	defer func() {
		if err := reg.Close(); err != nil {
			log.Warn("close registry", "err", err)
		}
	}()
	prov, closeProv, err := newProvisioner(ctx, cfg, reg, log)
	if err != nil {
		log.Error("start", "err", err)
		return exitFailure
	}
	defer closeProv()
	if prov != nil { // else a nil interface: config-only mode
		cat.SetProvisioner(prov)
	}
	inst := newInstaller(cfg, reg, cat, grubCat, log)
	cat.SetMountpoint(f.dir) // the content generator's --file is MOUNTPOINT/NAME
	ops, err := startOps(ctx, cfg, cat, prov, inst, log)
	if err != nil {
		log.Error("start", "err", err)
		return exitFailure
	}
	defer ops.close()
	stopImages, err := startImages(ctx, cfg, cat, log)
	if err != nil {
		log.Error("start", "err", err)
		return exitFailure
	}
	defer stopImages()
	srv, err := fs.Mount(f.dir, ops.source(), fs.MountOptions{Debug: f.debugFUSE, Logger: log})
	if err != nil {
		log.Error("start", "err", err)
		return exitFailure
	}
	grubSrv, err := mountGRUB(ctx, cfg, grubCat, ops, prov, f.debugFUSE, log)
	if err != nil {
		log.Error("start", "err", err)
		if cerr := srv.Close(); cerr != nil {
			log.Error("unmount", "err", cerr)
		}
		return exitFailure
	}
	started = true
	go cat.Watch(ctx, watchInterval)
	log.Info("serving", "mountpoint", f.dir, "config", cfg.File, "full_mode", cfg.FullMode(), "version", versionString())
	ops.ready()

	done := make(chan struct{})
	var doneOnce sync.Once
	go func() { srv.Wait(); doneOnce.Do(func() { close(done) }) }()
	if grubSrv != nil {
		go func() { grubSrv.Wait(); doneOnce.Do(func() { close(done) }) }()
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
	failed := false
	if grubSrv != nil {
		if err := grubSrv.Close(); err != nil {
			log.Error("unmount", "err", err)
			failed = true
		}
	}
	if err := srv.Close(); err != nil {
		log.Error("unmount", "err", err)
		return exitFailure
	}
	if failed {
		return exitFailure
	}
	// After a lazy unmount the server finishes when the last tftpd child
	// closes its file, which can take a minute; do not hold shutdown for it.
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		log.Warn("files still open after lazy unmount; exiting anyway", "waited", shutdownGrace)
	}
	log.Info("unmounted", "mountpoint", f.dir)
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

// mountGRUB mounts GRUB's prefix directory (grub_mount) beside pxelinux.cfg,
// served by gcat (checked at start, like the pxelinux catalog) with the
// same provisioner: a node keeps one root and one fsid whichever loader
// asks. nil without grub_mount.
func mountGRUB(ctx context.Context, cfg *config.Config, gcat *catalog.Catalog, ops *daemonOps, prov *provision.Provisioner, debug bool, log *slog.Logger) (*fs.Server, error) {
	if gcat == nil {
		return nil, nil
	}
	if prov != nil { // else a nil interface: config-only mode
		gcat.SetProvisioner(prov)
	}
	gcat.SetMountpoint(cfg.GrubMount)
	srv, err := fs.Mount(cfg.GrubMount, ops.sourceOf(gcat, metrics.LoaderGRUB), fs.MountOptions{Debug: debug, Logger: log})
	if err != nil {
		return nil, err
	}
	ops.reloadMu.Lock() // reloads read it
	ops.grub = gcat
	ops.reloadMu.Unlock()
	go gcat.Watch(ctx, watchInterval)
	log.Info("serving GRUB configs", "mountpoint", cfg.GrubMount)
	return srv, nil
}

// newInstaller makes install mode's manager over reg and gives it to the
// catalogs (gcat may be nil): a node's install state picks its template in
// both.
func newInstaller(cfg *config.Config, reg *registry.Registry, cat, gcat *catalog.Catalog, log *slog.Logger) *install.Manager {
	m := install.New(install.Options{
		Store: reg, Dir: cfg.StateDir, CallbackURL: cfg.CallbackURL, MaxBoots: cfg.InstallMaxBoots, Logger: log,
		Changed: func(id node.ID) {
			cat.NodeChanged(id)
			if gcat != nil {
				gcat.NodeChanged(id)
			}
		},
		Allowed: cat.Allowed,
	})
	cat.SetInstaller(m)
	if gcat != nil {
		gcat.SetInstaller(m)
	}
	return m
}
