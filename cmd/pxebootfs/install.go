package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/control"
	"github.com/pxebootfs/pxebootfs/internal/node"
)

type installFlags struct {
	where string
}

// runInstall asks the daemon to put nodes in install mode: each gets a new
// token (an old one stops working) and is served its install template
// until its installer calls done.
func runInstall(args []string, stdout, stderr io.Writer) int {
	var f installFlags
	c := newCmdline("install", "[-where NAME=value] [NODE...]", stderr)
	c.StringVar(&f.where, "where", "", "also every inventory node whose var.NAME is value (e.g. role=compute)")
	if code := c.parse(args, 0, -1); code >= 0 {
		return code
	}
	args = c.Args()
	var code int
	var nodes []node.ID
	if len(args) > 0 || f.where == "" {
		if nodes, code = parseNodes("install", args, stderr); code >= 0 {
			return code
		}
	}
	cfg, code := adminConfig("install", c.config, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := adminContext()
	defer cancel()
	results, err := controlClient(cfg).Install(ctx, nodes, f.where)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs install: %v\n", err)
		return exitFor(err)
	}
	without := loadersWithoutInstall(cfg)
	return report("install", results, func(id node.ID) string {
		msg := "install mode, new token; served its install template until its installer calls done"
		if ls := without(id); len(ls) > 0 {
			msg += "; no install template for its " + strings.Join(ls, ", ") + " names, which serve its usual config"
		}
		return msg
	}, stdout, stderr)
}

// loadersWithoutInstall returns, for a node, the configured loaders that
// would serve it its usual config in install mode (no install template of
// its own or of the loader's): a UEFI node installs only if GRUB has one.
func loadersWithoutInstall(cfg *config.Config) func(node.ID) []string {
	var cats []*catalog.Catalog
	for _, lc := range cfg.Loaders() {
		if c, err := catalogOf(cfg, lc, catalog.Options{}); err == nil {
			cats = append(cats, c)
		}
	}
	return func(id node.ID) []string {
		var out []string
		for _, c := range cats {
			if !c.HasInstallTemplate(id) {
				out = append(out, c.Loader().Name)
			}
		}
		return out
	}
}

// runInstalled ends nodes' install mode by hand: they are served their
// local-boot config.
func runInstalled(args []string, stdout, stderr io.Writer) int {
	return runNodeCommand(newCmdline("installed", "NODE...", stderr), args, stdout, stderr,
		func(ctx context.Context, c *control.Client, nodes []node.ID) ([]control.Result, string, error) {
			results, err := c.Installed(ctx, nodes)
			return results, "installed: served its local-boot config from now on", err
		})
}
