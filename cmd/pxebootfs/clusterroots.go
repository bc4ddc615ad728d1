package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/cluster"
	"github.com/pxebootfs/pxebootfs/internal/image"
	"github.com/pxebootfs/pxebootfs/internal/roots"
)

// Root generations follow the cluster: the daemon makes each root's
// desired generation (set by `root import` or `root use` on any server)
// current here, importing its source itself when this server lacks it, and
// reports what it serves. A generation becomes current only once its
// import is complete, so a node never gets half of one.

// followRoots reconciles at start and on every change of a desired
// generation, until ctx ends.
func followRoots(ctx context.Context, cfg *config.Config, cl *cluster.Cluster, log *slog.Logger) {
	st := rootStore(cfg)
	for {
		for name, d := range cl.DesiredRoots() {
			reconcileRoot(ctx, cfg, cl, st, name, d, log)
		}
		select {
		case <-ctx.Done():
			return
		case <-cl.RootsChanged():
		}
	}
}

// reconcileRoot makes d.Gen root name's current generation here.
func reconcileRoot(ctx context.Context, cfg *config.Config, cl *cluster.Cluster, st *roots.Store, name string, d cluster.Desired, log *slog.Logger) {
	log = log.With("root", name, "generation", d.Gen)
	report := func(cur, pending string, err error) {
		s := cluster.RootState{Current: cur, Pending: pending, Time: time.Now().UTC()}
		if err != nil {
			s.Error = err.Error()
		}
		if rerr := cl.ReportRoot(ctx, name, s); rerr != nil {
			log.Warn("cluster: report root state", "err", rerr)
		}
	}
	current := func() string {
		p, err := st.Current(name)
		if err != nil {
			return ""
		}
		return p.Gen
	}
	if current() == d.Gen {
		report(d.Gen, "", nil)
		return
	}
	_, err := st.Use(name, d.Gen, time.Now())
	if err == nil {
		log.Info("cluster: generation made current, as the cluster's", "by", d.By)
		report(d.Gen, "", nil)
		return
	}
	if !errors.Is(err, roots.ErrNotFound) {
		log.Error("cluster: make the cluster's generation current", "err", err)
		report(current(), d.Gen, err)
		return
	}
	log.Info("cluster: importing the cluster's generation", "source", d.Source, "by", d.By)
	report(current(), d.Gen, nil)
	o := roots.ImportOptions{Name: name, Source: d.Source, Platform: d.Platform, Force: d.Force, NoKernelCheck: d.NoKernelCheck,
		InsecureRegistry: d.InsecureRegistry, Log: log}
	if cfg.TFTPRoot != "" {
		ist, err := image.FromConfig(cfg)
		if err != nil {
			report(current(), d.Gen, err)
			return
		}
		o.MakeBoot = func(dir, kernel, initrd string) (roots.BootImage, error) {
			return bootImage(ctx, ist, name, dir, kernel, initrd, log)
		}
	}
	res, err := st.Import(ctx, o)
	if err != nil {
		log.Error("cluster: import the cluster's generation", "err", err)
		report(current(), d.Gen, err)
		return
	}
	if res.Gen != d.Gen {
		// The source gives other content than when it was imported:
		// keep what was current, and say so.
		err := fmt.Errorf("%s now gives generation %s, not the cluster's %s", d.Source, res.Gen, d.Gen)
		if res.Previous != "" {
			if _, uerr := st.Use(name, res.Previous, time.Now()); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}
		log.Error("cluster: import the cluster's generation", "err", err)
		report(current(), d.Gen, err)
		return
	}
	log.Info("cluster: imported the cluster's generation; current", "files", res.Files, "bytes", res.Size)
	report(d.Gen, "", nil)
}

// shareRoot tells the cluster, after an admin's import or use on this
// server, that gen is root name's generation everywhere. Outside cluster
// mode it does nothing.
func shareRoot(ctx context.Context, cfg *config.Config, st *roots.Store, name, gen string, o roots.ImportOptions) error {
	if cfg.ClusterEndpoints == nil {
		return nil
	}
	src := o.Source
	if src == "" {
		ix, err := st.Load()
		if err != nil {
			return err
		}
		if r := ix.Roots[name]; r != nil && r.Generations[gen] != nil {
			src = r.Generations[gen].Source
		}
	}
	// The daemons read it from their own working directory: a local path
	// must be absolute. (Transports such as docker:// are left as they are.)
	if src != "" && !strings.Contains(src, ":") && !filepath.IsAbs(src) {
		abs, err := filepath.Abs(src)
		if err != nil {
			return err
		}
		src = abs
	}
	cl, err := openCluster(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.SetDesired(ctx, name, cluster.Desired{Gen: gen, Source: src, Platform: o.Platform, Force: o.Force, NoKernelCheck: o.NoKernelCheck, InsecureRegistry: o.InsecureRegistry})
}
