package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/image"
	"github.com/pxebootfs/pxebootfs/internal/metrics"
)

// How often the daemon records which image versions it served, and prunes.
const (
	servedInterval = 10 * time.Second
	pruneInterval  = 10 * time.Minute
)

// checkImagesOutsideMount refuses an images_dir under the FUSE mount: the
// tftpd must read image files from disk, and the mount would hide them.
func checkImagesOutsideMount(cfg *config.Config, mountpoint string) error {
	if cfg.ImagesDir == "" {
		return nil
	}
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	if d := filepath.Clean(cfg.ImagesDir); d == mp || strings.HasPrefix(d, mp+"/") {
		return fmt.Errorf("%s: [PXEBOOTFS] images_dir: %s is inside the mount point %s; the tftpd must read images from disk", cfg.File, cfg.ImagesDir, mp)
	}
	return nil
}

// startImages runs the daemon's part of boot images: it removes what killed
// imports left in staging, records every servedInterval which versions the
// served configs named (kept across restarts, for garbage collection) and
// prunes every pruneInterval. served is the ledger every catalog notes
// into, with each version's serve time. The returned function stops it
// and records the last served versions.
func startImages(ctx context.Context, cfg *config.Config, served *image.Served, log *slog.Logger) (func(), error) {
	if cfg.TFTPRoot == "" {
		return func() {}, nil
	}
	st, err := image.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	switch err := st.CleanStaging(log); {
	case errors.Is(err, image.ErrBusy):
		log.Info("an image import is running; its staging is its own")
	case err != nil:
		return nil, err
	}
	record := func() {
		pending := served.Take()
		if err := st.RecordServed(pending); err != nil {
			// Kept for the next tick. ErrBusy: an import holds the
			// index; a version's grace also runs from when it stopped
			// being current, so a late record cannot let GC pull it.
			served.Restore(pending)
			if !errors.Is(err, image.ErrBusy) {
				log.Warn("record served image versions", "err", err)
			}
		}
	}
	prune := func() {
		removed, err := st.PruneIfIdle(image.Policy{Keep: cfg.ImageKeep, Grace: cfg.ImageGrace, Held: heldByRoots(cfg)}, time.Now())
		if err != nil && !errors.Is(err, image.ErrBusy) {
			log.Warn("prune images", "err", err)
		}
		for name, vs := range removed {
			log.Info("pruned image versions", "image", name, "versions", vs)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		tick, pruneTick := time.NewTicker(servedInterval), time.NewTicker(pruneInterval)
		defer tick.Stop()
		defer pruneTick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				record()
			case <-pruneTick.C:
				record()
				prune()
			}
		}
	})
	return func() { cancel(); wg.Wait(); record() }, nil
}

// imageState reads the image index for the metrics, at scrape time.
func imageState(cfg *config.Config) metrics.ReadImages {
	return func() (metrics.ImageState, bool) {
		st, err := image.FromConfig(cfg)
		if err != nil {
			return metrics.ImageState{}, false
		}
		ix, err := st.Load()
		if err != nil {
			return metrics.ImageState{}, false
		}
		out := metrics.ImageState{Current: map[string]string{}, Versions: map[string]int{},
			Imported: ix.Stats.Imported, Unchanged: ix.Stats.Unchanged, Failed: ix.Stats.Failed, Fetched: ix.Stats.Fetched}
		for name, im := range ix.Images {
			out.Current[name] = im.Current
			out.Versions[name] = len(im.Versions)
		}
		return out, true
	}
}
