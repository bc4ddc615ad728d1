package catalog

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/generator"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/pxename"
)

// DefaultMountpoint is what --file is built from until SetMountpoint says
// where the catalog is mounted (`pxebootfs render` has no mount).
const DefaultMountpoint = "/srv/tftp/pxelinux.cfg"

// contentGen is the catalog's content generator, fixed at New: the runner
// keeps its cache across reloads of the template and inventory.
type contentGen struct {
	run      *generator.Runner
	forNodes bool
	mnt      atomic.Pointer[string]
	// openMargin is how long a cached result must still live for an open
	// to serve it: the tftpd's fstat right after the open must see the
	// same result, not a new run of different size.
	openMargin time.Duration
}

// newContentGen returns nil when cfg has no content_generator.
func newContentGen(cfg *config.Config, log *slog.Logger) (*contentGen, error) {
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
	mnt := DefaultMountpoint
	g.mnt.Store(&mnt)
	return g, nil
}

// SetMountpoint tells the catalog where it is mounted, so the content
// generator's --file is the path the tftpd asked for. A relative dir is
// taken from the working directory.
func (c *Catalog) SetMountpoint(dir string) {
	if c.gen == nil {
		return
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	dir = filepath.Clean(dir)
	c.gen.mnt.Store(&dir)
}

// Generator returns the content generator's runner, nil without one.
func (c *Catalog) Generator() *generator.Runner {
	if c.gen == nil {
		return nil
	}
	return c.gen.run
}

func (g *contentGen) request(name string, n node.Node) generator.Request {
	q := generator.Request{Name: name, File: filepath.Join(*g.mnt.Load(), name), MAC: n.MAC, Node: n.ID.String()}
	if n.ID.IsValid() {
		q.IP = n.ID.Addr().String()
	}
	return q
}

// extend completes what resolve decided from the template, ethers and
// static_dir: it attaches the node's inventory record and asks the content
// generator where the rules say so:
//   - a node name, with generator_for_nodes: the program first, with --ip,
//     --mac and --node; if it refuses, the template as usual;
//   - a name nothing served: the program, if the name is a valid file name
//     (pxename.CheckStatic) and not a node name refused by the allow list;
//     an unknown 01-<mac> goes with --mac.
func (c *Catalog) extend(ctx context.Context, s *snapshot, name string, pn pxename.Name, e Entry, err error) (Entry, error) {
	if err == nil && e.Kind == KindNode {
		e.Inv = s.inv.ByID(e.Node.ID)
	}
	g := c.gen
	if g == nil {
		return e, err
	}
	if err == nil {
		if e.Kind != KindNode || !g.forNodes {
			return e, nil
		}
		res, gerr := g.run.Get(ctx, g.request(name, e.Node), 0)
		if gerr != nil {
			return e, nil
		}
		// The inode stays the node's, so ls and lookup agree.
		e.Kind, e.Gen = KindGenerated, res
		return e, nil
	}
	var n node.Node
	switch pn.Kind {
	case pxename.KindIP:
		return e, err // outside allow: the admin's policy for node names
	case pxename.KindMAC:
		if _, known := s.lookupMAC(pn.MAC); known {
			return e, err // its IP is outside allow
		}
		n.MAC = pxename.ColonMAC(pn.MAC)
	}
	if pxename.CheckStatic(name) != nil {
		return e, err // hostile names never reach the program
	}
	res, gerr := g.run.Get(ctx, g.request(name, n), 0)
	if gerr != nil {
		return Entry{}, fmt.Errorf("%q: %w: %w", name, gerr, ErrNotServed)
	}
	return Entry{Name: name, Kind: KindGenerated, Ino: tagGen | hashName(name), Node: n, Gen: res}, nil
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
