package main

import (
	"context"
	"io"

	"github.com/pxebootfs/pxebootfs/internal/control"
	"github.com/pxebootfs/pxebootfs/internal/node"
)

type resetFlags struct {
	force bool
}

// runReset asks the daemon to give nodes a fresh root: unexport, unmount,
// wipe the writable layer, mount and export again with the same fsid.
func runReset(args []string, stdout, stderr io.Writer) int {
	var f resetFlags
	c := newCmdline("reset", "NODE...", stderr)
	c.BoolVar(&f.force, "force", false, "reset even a node that booted within reset_guard (it may be running on that root)")
	return runNodeCommand(c, args, stdout, stderr,
		func(ctx context.Context, c *control.Client, nodes []node.ID) ([]control.Result, string, error) {
			results, err := c.Reset(ctx, nodes, f.force)
			return results, "reset: fresh root, same fsid", err
		})
}
