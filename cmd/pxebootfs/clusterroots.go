package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
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

// follow reconciles the versions of kind (cluster.KindRoots or
// KindImages) at start and on every change of a desired one, until ctx
// ends.
func follow(ctx context.Context, kind string, cl *cluster.Cluster, reconcile func(name string, d cluster.Desired)) {
	for {
		for name, d := range cl.DesiredOf(kind) {
			reconcile(name, d)
		}
		select {
		case <-ctx.Done():
			return
		case <-cl.Changed(kind):
		}
	}
}

// followRoots makes the cluster's root generations current here.
func followRoots(ctx context.Context, cfg *config.Config, cl *cluster.Cluster, log *slog.Logger) {
	st := rootStore(cfg)
	follow(ctx, cluster.KindRoots, cl, func(name string, d cluster.Desired) { reconcileRoot(ctx, cfg, cl, st, name, d, log) })
}

// reporter reports what this server serves of kind name.
func reporter(ctx context.Context, cl *cluster.Cluster, kind, name string, log *slog.Logger) func(cur, pending string, err error) {
	return func(cur, pending string, err error) {
		s := cluster.State{Current: cur, Pending: pending, Time: time.Now().UTC()}
		if err != nil {
			s.Error = err.Error()
		}
		if rerr := cl.Report(ctx, kind, name, s); rerr != nil {
			log.Warn("cluster: report state", "kind", kind, "name", name, "err", rerr)
		}
	}
}

// reconcileRoot makes d.Gen root name's current generation here.
func reconcileRoot(ctx context.Context, cfg *config.Config, cl *cluster.Cluster, st *roots.Store, name string, d cluster.Desired, log *slog.Logger) {
	log = log.With("root", name, "generation", d.Gen)
	report := reporter(ctx, cl, cluster.KindRoots, name, log)
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
	cl, err := openCluster(ctx, cfg, false, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.SetDesired(ctx, cluster.KindRoots, name, cluster.Desired{Gen: gen, Source: src, Platform: o.Platform, Force: o.Force, NoKernelCheck: o.NoKernelCheck, InsecureRegistry: o.InsecureRegistry})
}

// followImages makes the cluster's boot image versions current here.
func followImages(ctx context.Context, cfg *config.Config, cl *cluster.Cluster, log *slog.Logger) {
	ist, err := image.FromConfig(cfg)
	if err != nil {
		log.Error("cluster: boot images cannot follow the cluster", "err", err)
		return
	}
	follow(ctx, cluster.KindImages, cl, func(name string, d cluster.Desired) { reconcileImage(ctx, cl, ist, name, d, log) })
}

// reconcileImage makes d.Gen image name's current version here, importing
// its files from their sources when this server lacks it.
func reconcileImage(ctx context.Context, cl *cluster.Cluster, ist *image.Store, name string, d cluster.Desired, log *slog.Logger) {
	log = log.With("image", name, "version", d.Gen)
	report := reporter(ctx, cl, cluster.KindImages, name, log)
	prev, err := ist.Use(name, d.Gen, time.Now())
	if err == nil {
		if prev != d.Gen {
			log.Info("cluster: version made current, as the cluster's", "by", d.By)
		}
		report(d.Gen, "", nil)
		return
	}
	if !errors.Is(err, image.ErrNotFound) {
		log.Error("cluster: make the cluster's version current", "err", err)
		report("", d.Gen, err)
		return
	}
	log.Info("cluster: importing the cluster's version", "by", d.By)
	report("", d.Gen, nil)
	o := image.ImportOptions{Name: name, SHA256: d.SHA256, Log: log}
	for _, f := range slices.Sorted(maps.Keys(d.Files)) {
		o.Sources = append(o.Sources, image.Source{File: f, From: d.Files[f]})
	}
	res, err := ist.Import(ctx, o)
	if err == nil && res.Version != d.Gen {
		err = fmt.Errorf("its sources now give version %s, not the cluster's %s", res.Version, d.Gen)
		if res.Previous != "" {
			if _, uerr := ist.Use(name, res.Previous, time.Now()); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}
	}
	if err != nil {
		log.Error("cluster: import the cluster's version", "err", err)
		report("", d.Gen, err)
		return
	}
	log.Info("cluster: imported the cluster's version; current")
	report(d.Gen, "", nil)
}

// shareImage tells the cluster, after an admin's import or use of image
// name's version on this server, that it is current everywhere; its files'
// sources and sha256 come from this server's index. Outside cluster mode it
// does nothing.
func shareImage(ctx context.Context, cfg *config.Config, ist *image.Store, name, version string) error {
	if cfg.ClusterEndpoints == nil {
		return nil
	}
	ix, err := ist.Load()
	if err != nil {
		return err
	}
	img := ix.Images[name]
	if img == nil || img.Versions[version] == nil {
		return fmt.Errorf("image %s version %s: %w", name, version, image.ErrNotFound)
	}
	d := cluster.Desired{Gen: version, Files: map[string]string{}, SHA256: map[string]string{}}
	for f, v := range img.Versions[version].Files {
		src := v.Source
		if src != "" && !strings.Contains(src, "://") && !filepath.IsAbs(src) {
			if src, err = filepath.Abs(src); err != nil {
				return err
			}
		}
		d.Files[f], d.SHA256[f] = src, v.SHA256
	}
	cl, err := openCluster(ctx, cfg, false, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.SetDesired(ctx, cluster.KindImages, name, d)
}
