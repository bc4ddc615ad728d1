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

// versions is what following the cluster needs of this server's root
// generations or image versions.
type versions struct {
	kind, noun, what string // cluster.KindRoots, "root", "generation"
	current          func(name string) string
	use              func(name, v string) error
	notFound         error
	// fetch imports the sources of d, which makes what it gives current,
	// and returns that and what was current before.
	fetch func(name string, d cluster.Desired, log *slog.Logger) (got, previous string, err error)
}

// follow makes the cluster's desired generations (versions) current here,
// at start and on every change of a desired one, until ctx ends.
func follow(ctx context.Context, cl *cluster.Cluster, vs versions, log *slog.Logger) {
	for {
		for name, d := range cl.DesiredOf(vs.kind) {
			reconcile(ctx, cl, vs, name, d, log)
		}
		select {
		case <-ctx.Done():
			return
		case <-cl.Changed(vs.kind):
		}
	}
}

// reconcile makes d.Gen name's current generation (version) here,
// importing its sources when this server lacks it, and reports what it
// serves.
func reconcile(ctx context.Context, cl *cluster.Cluster, vs versions, name string, d cluster.Desired, log *slog.Logger) {
	log = log.With(vs.noun, name, vs.what, d.Gen)
	report := func(cur, pending string, err error) {
		s := cluster.State{Current: cur, Pending: pending, Time: time.Now().UTC()}
		if err != nil {
			s.Error = err.Error()
		}
		if rerr := cl.Report(ctx, vs.kind, name, s); rerr != nil {
			log.Warn("cluster: report state", "err", rerr)
		}
	}
	if vs.current(name) == d.Gen {
		report(d.Gen, "", nil)
		return
	}
	err := vs.use(name, d.Gen)
	if err == nil {
		log.Info("cluster: made the cluster's "+vs.what+" current", "by", d.By)
		report(d.Gen, "", nil)
		return
	}
	if !errors.Is(err, vs.notFound) {
		log.Error("cluster: make the cluster's "+vs.what+" current", "err", err)
		report(vs.current(name), d.Gen, err)
		return
	}
	log.Info("cluster: importing the cluster's "+vs.what, "by", d.By)
	report(vs.current(name), d.Gen, nil)
	got, prev, err := vs.fetch(name, d, log)
	if err == nil && got != d.Gen {
		// The sources give other content than when they were imported:
		// keep what was current, and say so.
		err = fmt.Errorf("its sources now give %s %s, not the cluster's %s", vs.what, got, d.Gen)
		if prev != "" {
			err = errors.Join(err, vs.use(name, prev))
		}
	}
	if err != nil {
		log.Error("cluster: import the cluster's "+vs.what, "err", err)
		report(vs.current(name), d.Gen, err)
		return
	}
	log.Info("cluster: imported the cluster's " + vs.what + "; current")
	report(d.Gen, "", nil)
}

// followRoots makes the cluster's root generations current here.
func followRoots(ctx context.Context, cfg *config.Config, cl *cluster.Cluster, log *slog.Logger) {
	st := rootStore(cfg)
	follow(ctx, cl, versions{
		kind: cluster.KindRoots, noun: "root", what: "generation", notFound: roots.ErrNotFound,
		current: func(name string) string {
			p, err := st.Current(name)
			if err != nil {
				return ""
			}
			return p.Gen
		},
		use: func(name, gen string) error { _, err := st.Use(name, gen, time.Now()); return err },
		fetch: func(name string, d cluster.Desired, log *slog.Logger) (string, string, error) {
			o := roots.ImportOptions{Name: name, Source: d.Source, Platform: d.Platform, Force: d.Force, NoKernelCheck: d.NoKernelCheck,
				InsecureRegistry: d.InsecureRegistry, Log: log}
			if cfg.TFTPRoot != "" {
				ist, err := image.FromConfig(cfg)
				if err != nil {
					return "", "", err
				}
				o.MakeBoot = func(dir, kernel, initrd string) (roots.BootImage, error) {
					return bootImage(ctx, ist, name, dir, kernel, initrd, log)
				}
			}
			res, err := st.Import(ctx, o)
			return res.Gen, res.Previous, err
		},
	}, log)
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
	// Transports (docker://, oci:PATH, …) are left as they are.
	src, err := absLocal(src, !strings.Contains(src, ":"))
	if err != nil {
		return err
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
	follow(ctx, cl, versions{
		kind: cluster.KindImages, noun: "image", what: "version", notFound: image.ErrNotFound,
		current: func(name string) string {
			ix, err := ist.Load()
			if err != nil || ix.Images[name] == nil {
				return ""
			}
			return ix.Images[name].Current
		},
		use: func(name, v string) error { _, err := ist.Use(name, v, time.Now()); return err },
		fetch: func(name string, d cluster.Desired, log *slog.Logger) (string, string, error) {
			o := image.ImportOptions{Name: name, SHA256: d.SHA256, Log: log}
			for _, f := range slices.Sorted(maps.Keys(d.Files)) {
				o.Sources = append(o.Sources, image.Source{File: f, From: d.Files[f]})
			}
			res, err := ist.Import(ctx, o)
			return res.Version, res.Previous, err
		},
	}, log)
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
		src, err := absLocal(v.Source, !strings.Contains(v.Source, "://"))
		if err != nil {
			return err
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

// absLocal makes src absolute if it is a local path: the daemons read
// it from their own working directory.
func absLocal(src string, local bool) (string, error) {
	if src == "" || !local || filepath.IsAbs(src) {
		return src, nil
	}
	return filepath.Abs(src)
}
