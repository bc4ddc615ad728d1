// Command pxebootfs serves pxelinux configs to any stock tftpd from a FUSE
// filesystem mounted over pxelinux.cfg, and gives each booting node its own
// copy-on-write root exported over NFS. This file only dispatches
// subcommands; each lives in its own file with one flags struct.
package main

import (
	"fmt"
	"io"
	"os"
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"mount", "mount the filesystem and serve until SIGINT/SIGTERM", runMount},
		{"render", "print what a read of NAME returns (pxelinux.cfg/NAME, the GRUB mount's grub.cfg… names, -loader ipxe for iPXE scripts); provisions nothing", runRender},
		{"check", "validate the config and the environment", runCheck},
		{"nodes", "list the nodes: address, fsid, root generation, mounted, exported, boots, install state, last error", runNodes},
		{"reset", "give nodes a fresh root (wipe their writable layer), same fsid", runReset},
		{"release", "unexport and unmount nodes' roots; -purge also deletes and forgets them", runRelease},
		{"install", "put nodes in install mode (new token) until their installer calls done", runInstall},
		{"installed", "end nodes' install mode by hand: they boot from their local disk", runInstalled},
		{"move", "cluster mode: hand a node to another server, which holds its root from its next boot", runMove},
		{"reload", "make the daemon re-read its config, template, ethers (as SIGHUP)", runReload},
		{"image", "boot images: import, use (roll back), list, remove, prune versions", runImage},
		{"root", "node roots: import generations, use (roll back), list, remove, prune, upgrade nodes", runRoot},
		{"version", "print the version", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: pxebootfs COMMAND [flags] [args]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'pxebootfs COMMAND -h' for a command's flags.\n")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "pxebootfs: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}
