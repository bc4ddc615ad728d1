package main

import (
	"context"
	"io"

	"github.com/pxebootfs/pxebootfs/internal/control"
	"github.com/pxebootfs/pxebootfs/internal/node"
)

type releaseFlags struct {
	purge bool
	force bool
}

// runRelease asks the daemon to unexport and unmount nodes' roots, and with
// -purge to delete their data and forget them.
func runRelease(args []string, stdout, stderr io.Writer) int {
	var f releaseFlags
	c := newCmdline("release", "NODE...", stderr)
	c.BoolVar(&f.purge, "purge", false, "also delete the nodes' overlay data and forget them (their fsids are retired, never reused)")
	c.BoolVar(&f.force, "force", false, "even if a node booted within reset_guard (it may be running on the root taken away)")
	return runNodeCommand(c, args, stdout, stderr,
		func(ctx context.Context, c *control.Client, nodes []node.ID) ([]control.Result, string, error) {
			results, err := c.Release(ctx, nodes, f.purge, f.force)
			done := "released: unexported and unmounted; its data is kept and its next boot provisions it again"
			if f.purge {
				done = "purged: unexported, unmounted, data deleted, forgotten"
			}
			return results, done, err
		})
}
