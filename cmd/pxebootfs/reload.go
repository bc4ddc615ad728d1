package main

import (
	"fmt"
	"io"
)

// runReload asks the daemon to re-read its config (as SIGHUP does) and
// reports whether the new one was taken.
func runReload(args []string, stdout, stderr io.Writer) int {
	c := newCmdline("reload", "", stderr)
	if code := c.parse(args, 0, 0); code >= 0 {
		return code
	}
	client, cfg, code := daemonClient("reload", c.config, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := adminContext()
	defer cancel()
	if err := client.Reload(ctx); err != nil {
		fmt.Fprintf(stderr, "pxebootfs reload: %v\n", err)
		if code := exitFor(err); code != exitFailure {
			return code
		}
		// The daemon rejected the new config and serves the old one.
		return exitConfig
	}
	if cfg != nil {
		fmt.Fprintf(stdout, "reloaded %s\n", cfg.File)
	} else {
		fmt.Fprintln(stdout, "reloaded")
	}
	return exitOK
}
