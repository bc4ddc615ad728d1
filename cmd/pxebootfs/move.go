package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/pxebootfs/pxebootfs/internal/provision"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

// runMove hands a node to another server of the cluster: from its next
// boot that server holds its root (made fresh there) and every server
// renders its config with that server's address. The old owner's layer is
// kept, as every node's data is until an admin deletes it (`pxebootfs
// release -purge` there).
func runMove(args []string, stdout, stderr io.Writer) int {
	c := newCmdline("move", "NODE SERVER", stderr)
	force := c.Bool("force", false, "move even if the node booted within reset_guard, or this server cannot tell when it last booted")
	if code := c.parse(args, 2, 2); code >= 0 {
		return code
	}
	cfg, code := c.load()
	if code >= 0 {
		return code
	}
	if cfg.ClusterEndpoints == nil {
		fmt.Fprintf(stderr, "pxebootfs move: %s has no cluster_endpoints: there is no other server to move a node to\n", cfg.File)
		return exitRefused
	}
	ids, code := parseNodes("move", c.Args()[:1], stderr)
	if code >= 0 {
		return code
	}
	id, to := ids[0], c.Arg(1)
	ctx, cancel := adminContext()
	defer cancel()
	cl, err := openCluster(ctx, cfg, false, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs move: %v\n", err)
		return exitFailure
	}
	defer cl.Close()
	owner, ok := cl.Owner(id)
	switch {
	case ok && owner.Server == to:
		fmt.Fprintf(stdout, "%s: already owned by %s\n", id, to)
		return exitOK
	case !*force && ok && owner.Server != cfg.ServerName:
		fmt.Fprintf(stderr, "pxebootfs move: %s is owned by %s, which knows when it last booted: run the move there, or add -force if the node is down\n", id, owner.Server)
		return exitRefused
	case !*force && ok:
		// The owner's own reset_guard check, on its registry.
		reg, err := registry.OpenReadOnly(cfg.StateDir)
		if err != nil {
			fmt.Fprintf(stderr, "pxebootfs move: read the registry: %v\n", err)
			return exitFailure
		}
		p := provision.New(provision.Options{Registry: reg, NodeDir: cfg.NodeDir, ResetGuard: cfg.ResetGuard})
		if err := p.CheckGuard("move", "its root would be made afresh on "+to, id, false); err != nil {
			fmt.Fprintf(stderr, "pxebootfs move: %v\n", err)
			return exitRefused
		}
	}
	prev, err := cl.Move(ctx, id, to)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs move: %v\n", err)
		return exitFailure
	}
	if prev == "" {
		prev = "no server"
	}
	fmt.Fprintf(stdout, "%s: moved from %s to %s; its next boot gets a fresh root there\n", id, prev, to)
	return exitOK
}
