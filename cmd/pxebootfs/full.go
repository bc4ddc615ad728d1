package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/cluster"
	"github.com/pxebootfs/pxebootfs/internal/metrics"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/provision"
	"github.com/pxebootfs/pxebootfs/internal/registry"
	"github.com/pxebootfs/pxebootfs/internal/roots"
	"github.com/pxebootfs/pxebootfs/nfsexport"
	"github.com/pxebootfs/pxebootfs/overlay"
)

// exportsFile is where exportfs exports are mirrored, so that an nfs-server
// restart (exportfs -ra) keeps them.
const exportsFile = "/etc/exports.d/pxebootfs.exports"

// newProvisioner builds the provisioner for full mode and restores every
// known node, or returns nil in config-only mode. The returned func closes
// what it opened (the exporter's connection); node roots and exports stay.
func newProvisioner(ctx context.Context, cfg *config.Config, reg *registry.Registry, cl *cluster.Cluster, met *metrics.Metrics, rootFor func(node.ID) string, log *slog.Logger) (p *provision.Provisioner, closeAll func(), err error) {
	if !cfg.FullMode() {
		return nil, func() {}, nil
	}
	var closers []func()
	all := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		// The returns below set closeAll to nil on error: close through
		// the local.
		if err != nil {
			all()
		}
	}()
	// node_dir, overlay_dir and state_dir exist: config.CreateDirs made them.
	ov, err := newOverlay(cfg)
	if err != nil {
		return nil, nil, err
	}
	ex, err := newExporter(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	if c, ok := ex.(io.Closer); ok {
		closers = append(closers, func() {
			if err := c.Close(); err != nil {
				log.Warn("close exporter", "exporter", ex.Name(), "err", err)
			}
		})
	}
	if i, ok := ex.(nfsexport.Initer); ok {
		// Before Restore mounts anything: Init tells Ganesha's exports of
		// unmounted roots from live ones.
		if err := i.Init(ctx); err != nil {
			return nil, nil, err
		}
	}
	rs := rootStore(cfg)
	// What killed imports left, and the seals a reboot took: before any
	// node is mounted over a generation.
	if err := rs.CleanStaging(); err != nil {
		log.Warn("roots: clean staging", "err", err)
	}
	if err := rs.SealAll(); err != nil {
		log.Error("roots: seal generations read-only", "err", err)
	}
	o := provision.Options{Overlay: ov, Exporter: ex, Registry: reg, NodeDir: cfg.NodeDir, StartFSID: cfg.StartFSID,
		ResetGuard: cfg.ResetGuard, ResetOnBoot: cfg.ResetOnBoot, Logger: log, Roots: rs, RootFor: rootFor, ServerAddress: cfg.ServerAddress}
	if cl != nil {
		o.Cluster = cl
	}
	if met != nil {
		// Not a typed nil in the interface.
		o.Metrics = met
	}
	p = provision.New(o)
	n, rerr := p.Restore(ctx)
	if rerr != nil {
		log.Error("restore: some nodes could not be restored; their next boot retries", "err", rerr)
	}
	log.Info("restore: done", "ready", n, "known", reg.Len())
	p.DiscardLeftovers()
	if cl != nil {
		// Nodes handed to this server get their roots now, one at a
		// time: the other servers wait for them to render the nodes.
		owned := cl.Owned()
		go func() {
			for id := range owned {
				p.Adopt(context.WithoutCancel(ctx), id)
			}
		}()
	}
	return p, all, nil
}

// rootStore is cfg's roots: roots_dir's, and root_dir as the root
// "root_dir".
func rootStore(cfg *config.Config) *roots.Store {
	return roots.New(cfg.RootsDir, cfg.StateDir, cfg.RootDir)
}

func newOverlay(cfg *config.Config) (*overlay.Manager, error) {
	return overlay.New(overlayOptions(cfg))
}

func overlayOptions(cfg *config.Config) overlay.Options {
	return overlay.Options{
		Type:       overlay.Type(cfg.OverlayType),
		RootDir:    cfg.RootDir,
		NodeDir:    cfg.NodeDir,
		OverlayDir: cfg.OverlayDir,
		Extra:      cfg.OverlayOptions,
	}
}

func newExporter(cfg *config.Config, log *slog.Logger) (nfsexport.Exporter, error) {
	switch cfg.Export {
	case config.ExportNone:
		return nfsexport.None{}, nil
	case config.ExportGanesha:
		return nfsexport.NewGanesha(nfsexport.GaneshaOptions{ConfigFile: cfg.GaneshaConfig, Bus: cfg.GaneshaDBus, Logger: log})
	default:
		return nfsexport.NewExportfs(nfsexport.ExportfsOptions{Options: cfg.ExportOptions, ExportsFile: exportsFile, Logger: log})
	}
}

// newPeeker gives `render` the side-effect-free view of full mode: the
// registry read without its lock, and no mounts.
func newPeeker(cfg *config.Config) (node.Provisioner, error) {
	if !cfg.FullMode() {
		return nil, nil
	}
	// The roots index is read (what a node's generation boots), never
	// changed: Peek does not pin or seal.
	o := provision.Options{NodeDir: cfg.NodeDir, StartFSID: cfg.StartFSID, Roots: rootStore(cfg),
		RootFor: func(node.ID) string { return cfg.Root }, ServerAddress: cfg.ServerAddress}
	reg, err := registry.OpenReadOnly(cfg.StateDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Never mounted in full mode yet: no registry (and no typed nil
		// inside the interface).
	case err != nil:
		return nil, err
	default:
		o.Registry = reg
	}
	return provision.New(o), nil
}

// checkFull checks what full mode needs: overlay support with upper and
// work on one filesystem (a test mount in a temp dir under overlay_dir, or
// where it will be created), and the export tool, or for Ganesha that its
// export manager answers on D-Bus and ganesha_config is a file pxebootfs
// can update. A directory mount will create is a note, not a problem.
func checkFull(cfg *config.Config) (problems, notes []string) {
	if !cfg.FullMode() {
		return nil, nil
	}
	for _, d := range []struct{ key, path string }{{"node_dir", cfg.NodeDir}, {"overlay_dir", cfg.OverlayDir}} {
		fi, err := os.Stat(d.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			notes = append(notes, fmt.Sprintf("%s %s does not exist yet; pxebootfs mount creates it", d.key, d.path))
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s %s: %v", d.key, d.path, err))
		case !fi.IsDir():
			problems = append(problems, fmt.Sprintf("%s %s: not a directory", d.key, d.path))
		}
	}
	if len(problems) == 0 {
		if err := overlay.Check(overlayOptions(cfg)); err != nil {
			problems = append(problems, fmt.Sprintf("overlay_type %s: %v", cfg.OverlayType, err))
		}
	}
	if cfg.Export == config.ExportFS {
		if _, err := exec.LookPath("exportfs"); err != nil {
			if _, err2 := os.Stat("/usr/sbin/exportfs"); err2 != nil {
				problems = append(problems, "export exportfs: exportfs is not installed (apt-get install nfs-kernel-server)")
			}
		}
		if err := nfsexport.KernelServer(); err != nil {
			problems = append(problems, fmt.Sprintf("export exportfs: %v", err))
		}
	}
	if cfg.Export == config.ExportGanesha {
		if err := checkGanesha(cfg); err != nil {
			problems = append(problems, fmt.Sprintf("export ganesha: %v", err))
		}
	}
	return problems, notes
}

// ganeshaCheckTimeout bounds check's D-Bus call to Ganesha.
const ganeshaCheckTimeout = 10 * time.Second

func checkGanesha(cfg *config.Config) error {
	g, err := nfsexport.NewGanesha(nfsexport.GaneshaOptions{ConfigFile: cfg.GaneshaConfig, Bus: cfg.GaneshaDBus})
	if err != nil {
		return err
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), ganeshaCheckTimeout)
	defer cancel()
	return g.Check(ctx)
}

// kernelExports: node roots are exported to the kernel NFS server.
func kernelExports(cfg *config.Config) bool {
	return cfg.FullMode() && cfg.Export == config.ExportFS
}

// kernelServerCheckInterval is how often the daemon asks whether the kernel
// NFS server runs.
const kernelServerCheckInterval = time.Minute

// watchKernelServer logs, at start and whenever it changes, whether the
// kernel NFS server runs: without it every export succeeds (exportfs only
// writes etab) and every node fails to mount its root, with no other sign.
func watchKernelServer(ctx context.Context, log *slog.Logger) {
	up := true // what was said last; the first check says it when down
	tick := time.NewTicker(kernelServerCheckInterval)
	defer tick.Stop()
	for {
		err := nfsexport.KernelServer()
		switch {
		case err != nil && up:
			log.Warn("NFS server: not running; node roots are exported but cannot be mounted", "err", err)
		case err == nil && !up:
			log.Info("NFS server: running again")
		}
		up = err == nil
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// openCluster connects to cfg's etcd as this server. A daemon starts
// (startDown) even while etcd does not answer: it serves its own nodes
// and joins when etcd does; a command fails.
func openCluster(ctx context.Context, cfg *config.Config, startDown bool, log *slog.Logger) (*cluster.Cluster, error) {
	cl, err := cluster.Open(ctx, cluster.Options{Endpoints: cfg.ClusterEndpoints, CertFile: cfg.ClusterCert, KeyFile: cfg.ClusterKey, CAFile: cfg.ClusterCA,
		Prefix: cfg.ClusterPrefix, Server: cfg.ServerName, Address: cfg.ServerAddress, Logger: log, StartDown: startDown})
	if err != nil {
		return nil, fmt.Errorf("cluster mode: %w", err)
	}
	log.Info("cluster: joined", "server", cfg.ServerName, "address", cfg.ServerAddress, "etcd", strings.Join(cfg.ClusterEndpoints, ","), "up", cl.Up(), "servers", len(cl.Servers()))
	return cl, nil
}
