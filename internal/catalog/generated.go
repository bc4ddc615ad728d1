package catalog

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/generator"
	"github.com/pxebootfs/pxebootfs/internal/node"
)

// DefaultMountpoint is what --file is built from when Options.Mountpoint
// does not say where the catalog is mounted (`pxebootfs render` has no
// mount).
const DefaultMountpoint = "/srv/tftp/pxelinux.cfg"

// contentGen is the catalog's content generator, fixed at New: the runner
// keeps its cache across reloads of the template and inventory.
type contentGen struct {
	run      *generator.Runner
	forNodes bool
	mnt      string // the mount point, absolute
	// openMargin is how long a cached result must still live for an open
	// to serve it: the tftpd's fstat right after the open must see the
	// same result, not a new run of different size.
	openMargin time.Duration
}

// newContentGen returns nil when cfg has no content_generator. mnt is where
// the catalog is mounted ("" for DefaultMountpoint).
func newContentGen(cfg *config.Config, mnt string, log *slog.Logger) (*contentGen, error) {
	if cfg.ContentGenerator == "" {
		return nil, nil
	}
	r, err := generator.New(generator.Options{
		Program:     cfg.ContentGenerator,
		Timeout:     cfg.GeneratorTimeout,
		TTL:         cfg.GeneratorTTL,
		Concurrency: cfg.GeneratorConcurrency,
		Logger:      log,
	})
	if err != nil {
		return nil, fmt.Errorf("config %s: content_generator: %w", cfg.File, err)
	}
	g := &contentGen{run: r, forNodes: cfg.GeneratorForNodes}
	g.openMargin = min(r.Options().TTL/2, time.Second)
	if mnt == "" {
		mnt = DefaultMountpoint
	}
	if abs, err := filepath.Abs(mnt); err == nil {
		mnt = abs
	}
	g.mnt = filepath.Clean(mnt)
	return g, nil
}

// Generator returns the content generator's runner, nil without one.
func (c *Catalog) Generator() *generator.Runner {
	if c.gen == nil {
		return nil
	}
	return c.gen.run
}

func (g *contentGen) request(name string, n node.Node) generator.Request {
	q := generator.Request{Name: name, File: filepath.Join(g.mnt, name), MAC: n.MAC, Node: n.ID.String()}
	if n.ID.IsValid() {
		q.IP = n.ID.Addr().String()
	}
	return q
}

// openGenerated returns the bytes for one open of a generated name: the
// cached result if it lives on long enough for the tftpd's fstat to see it
// too, else a new run (which then becomes the cached result).
func (c *Catalog) openGenerated(ctx context.Context, e Entry) ([]byte, error) {
	res, err := c.gen.run.Get(ctx, e.Gen.Request, c.gen.openMargin)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", e.Name, err)
	}
	return res.Data, nil
}
