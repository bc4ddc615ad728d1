package main

import (
	"fmt"
	"io"
)

type releaseFlags struct {
	config string
	purge  bool
}

// runRelease asks the daemon to unexport and unmount nodes' roots, and with
// -purge to delete their data and forget them.
func runRelease(args []string, stdout, stderr io.Writer) int {
	var f releaseFlags
	fl := newFlagSet("release", "NODE...", stderr)
	fl.StringVar(&f.config, "c", "", configFlagHelp)
	fl.BoolVar(&f.purge, "purge", false, "also delete the nodes' overlay data and forget them (their fsids are retired, never reused)")
	args, code := parseInterspersed(fl, args)
	if code >= 0 {
		return code
	}
	nodes, code := parseNodes("release", args, stderr)
	if code >= 0 {
		return code
	}
	cfg, code := adminConfig("release", f.config, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := adminContext()
	defer cancel()
	results, err := controlClient(cfg).Release(ctx, nodes, f.purge)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs release: %v\n", err)
		return exitFor(err)
	}
	done := "released: unexported and unmounted; its data is kept and its next boot provisions it again"
	if f.purge {
		done = "purged: unexported, unmounted, data deleted, forgotten"
	}
	return report("release", results, func(string) string { return done }, stdout, stderr)
}
