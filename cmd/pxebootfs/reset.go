package main

import (
	"fmt"
	"io"
)

type resetFlags struct {
	config string
	force  bool
}

// runReset asks the daemon to give nodes a fresh root: unexport, unmount,
// wipe the writable layer, mount and export again with the same fsid.
func runReset(args []string, stdout, stderr io.Writer) int {
	var f resetFlags
	fl := newFlagSet("reset", "NODE...", stderr)
	fl.StringVar(&f.config, "c", "", configFlagHelp)
	fl.BoolVar(&f.force, "force", false, "reset even a node that booted within reset_guard (it may be running on that root)")
	args, code := parseInterspersed(fl, args)
	if code >= 0 {
		return code
	}
	nodes, code := parseNodes("reset", args, stderr)
	if code >= 0 {
		return code
	}
	cfg, code := adminConfig("reset", f.config, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := adminContext()
	defer cancel()
	results, err := controlClient(cfg).Reset(ctx, nodes, f.force)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs reset: %v\n", err)
		return exitFor(err)
	}
	return report("reset", results, func(string) string { return "reset: fresh root, same fsid" }, stdout, stderr)
}
