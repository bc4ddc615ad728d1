package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/fs"
	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/cluster"
	"github.com/pxebootfs/pxebootfs/internal/control"
	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/metrics"
	"github.com/pxebootfs/pxebootfs/internal/provision"
	"github.com/pxebootfs/pxebootfs/internal/registry"
	"github.com/pxebootfs/pxebootfs/nfsexport"
)

// daemonOps is what `pxebootfs mount` runs beside the filesystem for admins: the
// control socket (full mode), config reloads on SIGHUP and on request, the
// metrics endpoint, and systemd notifications.
type daemonOps struct {
	log  *slog.Logger
	cats catalogList            // one per mounted loader, pxelinux's first
	prov *provision.Provisioner // nil in config-only mode
	inst *install.Manager       // install mode, in both modes
	met  *metrics.Metrics       // nil without metrics_listen
	cl   *cluster.Cluster       // nil outside cluster mode

	metricsSrv  *metrics.Server
	callbackSrv *install.Server // nil without callback_listen
	control     *control.Server
	hup         chan os.Signal
	hupDone     chan struct{}

	reloadMu sync.Mutex
	cfg      *config.Config // the config serving; under reloadMu
}

// newMetrics makes the daemon's metrics, before the parts that count into
// them, or returns nil without metrics_listen.
func newMetrics(cfg *config.Config, mounts []*loaderMount) *metrics.Metrics {
	if cfg.MetricsListen == "" {
		return nil
	}
	names := make([]string, len(mounts))
	for i, m := range mounts {
		names[i] = m.ld.Name
	}
	return metrics.New(names...)
}

// startOps starts everything but the filesystem. prov is what
// newProvisioner returned (nil in config-only mode), met what newMetrics
// did. Call close when done.
func startOps(ctx context.Context, cfg *config.Config, cats catalogList, prov *provision.Provisioner, inst *install.Manager, met *metrics.Metrics, cl *cluster.Cluster, log *slog.Logger) (o *daemonOps, err error) {
	o = &daemonOps{log: log, cats: cats, prov: prov, inst: inst, met: met, cl: cl, cfg: cfg, hupDone: make(chan struct{})}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	if met != nil {
		if o.prov != nil {
			o.met.RegisterNodes(o.countNodes)
			o.met.RegisterRoots(o.rootGenerations)
		}
		if cfg.TFTPRoot != "" {
			o.met.RegisterImages(imageState(cfg))
		}
		o.met.RegisterInstalls(o.installCounts)
		if kernelExports(cfg) {
			o.met.RegisterNFSServer(func() bool { return nfsexport.KernelServer() == nil })
		}
		o.metricsSrv, err = o.met.Serve(cfg.MetricsListen, log)
		if err != nil {
			return o, err
		}
		log.Info("metrics: serving", "addr", o.metricsSrv.Addr().String(), "path", "/metrics")
	}
	if kernelExports(cfg) {
		go watchKernelServer(ctx, log)
	}
	if cfg.CallbackListen != "" {
		o.callbackSrv, err = inst.Serve(cfg.CallbackListen, log)
		if err != nil {
			return o, err
		}
		log.Info("install callback: serving", "addr", o.callbackSrv.Addr().String(), "url", cfg.CallbackURL+install.PathPrefix+"NODE/{started,done,failed}")
	}
	// The control socket lives in state_dir in both modes, so `pxebootfs
	// reload` works for a config-only daemon too (it has no nodes).
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return o, fmt.Errorf("create state_dir %s: %w", cfg.StateDir, err)
	}
	o.control, err = control.Listen(control.SocketPath(cfg.StateDir), controlHandler{o}, log)
	if err != nil {
		return o, err
	}
	log.Info("control socket: listening", "path", o.control.Path())
	o.hup = make(chan os.Signal, 1)
	signal.Notify(o.hup, syscall.SIGHUP)
	go func() {
		defer close(o.hupDone)
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-o.hup:
				if !ok {
					return
				}
				o.reload("signal")
			}
		}
	}()
	return o, nil
}

// sourceOf is what a loader's mount serves: its catalog, counted when
// metrics are on, labelled with its loader.
func (o *daemonOps) sourceOf(c *catalog.Catalog) fs.Source {
	if o.met == nil {
		return c
	}
	return meteredSource{Catalog: c, m: o.met, loader: c.Loader().Name}
}

// ready tells systemd (Type=notify) that the mount is up.
func (o *daemonOps) ready() { o.notify(daemon.SdNotifyReady) }

// stopping tells systemd that shutdown began.
func (o *daemonOps) stopping() { o.notify(daemon.SdNotifyStopping) }

func (o *daemonOps) notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		o.log.Warn("sd_notify", "state", state, "err", err)
	}
}

// close stops the control socket (waiting for a request in flight), the
// metrics server and the SIGHUP handler.
func (o *daemonOps) close() {
	if o.hup != nil {
		signal.Stop(o.hup)
		close(o.hup)
		<-o.hupDone
	}
	if o.control != nil {
		if err := o.control.Close(); err != nil {
			o.log.Warn("control socket", "err", err)
		}
	}
	if o.metricsSrv != nil {
		if err := o.metricsSrv.Close(); err != nil {
			o.log.Warn("metrics", "err", err)
		}
	}
	if o.callbackSrv != nil {
		if err := o.callbackSrv.Close(); err != nil {
			o.log.Warn("install callback", "err", err)
		}
	}
}

// reload re-reads the config file and switches to its template, ethers,
// static_dir, allow, inventory and reset policy without unmounting. A
// config that does not load, or that changes a key fixed at start, is
// rejected and the current one keeps serving.
func (o *daemonOps) reload(trigger string) error {
	o.reloadMu.Lock()
	defer o.reloadMu.Unlock()
	o.notify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
	defer o.ready()
	start := time.Now()
	err := o.reloadLocked()
	o.met.Reload(trigger, err)
	if err != nil {
		o.log.Error("reload rejected; still serving the previous config", "trigger", trigger, "err", err, "duration", time.Since(start))
		return err
	}
	o.log.Info("reloaded config", "trigger", trigger, "config", o.cfg.File, "duration", time.Since(start))
	return nil
}

func (o *daemonOps) reloadLocked() error {
	cfg, err := config.Load(o.cfg.File)
	if err != nil {
		return err
	}
	if keys := config.FixedChanged(o.cfg, cfg); len(keys) > 0 {
		return fmt.Errorf("%s: %s changed, which takes a restart of the daemon (%s)", cfg.File, strings.Join(keys, ", "), restartHint())
	}
	for _, c := range o.cats {
		if err := c.SetConfig(cfg); err != nil {
			return err
		}
	}
	if o.prov != nil {
		o.prov.SetResetPolicy(cfg.ResetGuard, cfg.ResetOnBoot)
	}
	o.cfg = cfg
	return nil
}

// restartHint says how this daemon is restarted: systemd sets
// INVOCATION_ID for the processes of a unit it started.
func restartHint() string {
	if os.Getenv("INVOCATION_ID") != "" {
		return "systemctl restart pxebootfs"
	}
	return "stop pxebootfs mount and start it again"
}

// countNodes feeds the node gauges at scrape time.
func (o *daemonOps) countNodes(ctx context.Context) (metrics.NodeCounts, bool) {
	st := o.prov.Status(ctx)
	c := metrics.NodeCounts{Known: len(st)}
	for _, s := range st {
		if s.Mounted != nil && *s.Mounted {
			c.Mounted++
		}
		if s.Exported != nil && *s.Exported {
			c.Exported++
		}
	}
	return c, true
}

// rootGenerations feeds the root gauges at scrape time: the generations
// kept, with the nodes pinned to each from the registry.
func (o *daemonOps) rootGenerations() ([]metrics.RootGeneration, bool) {
	o.reloadMu.Lock()
	cfg := o.cfg
	o.reloadMu.Unlock()
	ls, err := rootStore(cfg).List("", pinsFrom(o.inst.Records()))
	if err != nil {
		return nil, false
	}
	out := make([]metrics.RootGeneration, len(ls))
	for i, l := range ls {
		out[i] = metrics.RootGeneration{Root: l.Name, Generation: l.Generation, Current: l.Current, Nodes: len(l.Nodes), Bytes: l.Size}
	}
	return out, true
}

// installCounts feeds the install gauges at scrape time.
func (o *daemonOps) installCounts() metrics.InstallCounts {
	c := metrics.InstallCounts{ByState: map[string]int{}}
	for _, r := range o.inst.Records() {
		if r.Install.State != registry.InstallNone {
			c.ByState[string(r.Install.State)]++
		}
		if o.inst.Loop(r.Install) {
			c.Loops++
		}
	}
	return c
}
