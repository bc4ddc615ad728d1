package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

type renderFlags struct {
	config     string
	name       string
	mountpoint string
}

// runRender prints exactly the bytes a read of pxelinux.cfg/NAME would
// return. It never provisions: it does not even open the state's lock.
func runRender(args []string, stdout, stderr io.Writer) int {
	var f renderFlags
	fl := newFlagSet("render", "NAME", stderr)
	fl.StringVar(&f.config, "c", "", configFlagHelp)
	fl.StringVar(&f.mountpoint, "mountpoint", catalog.DefaultMountpoint, "where pxebootfs is mounted: content_generator gets --file MOUNTPOINT/NAME")
	if code := parseFlags(fl, args); code >= 0 {
		return code
	}
	if fl.NArg() != 1 {
		fmt.Fprintln(stderr, "pxebootfs render: need exactly one NAME (e.g. C0A80102 or 01-aa-bb-cc-dd-ee-ff)")
		return exitUsage
	}
	f.name = fl.Arg(0)
	cfg, code := loadConfig(f.config, stderr)
	if code >= 0 {
		return code
	}
	prov, err := newPeeker(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs render: %v\n", err)
		return exitFailure
	}
	newCat := catalog.New
	if strings.HasPrefix(f.name, "grub.cfg") {
		// A name under GRUB's prefix directory (grub_mount).
		if cfg.GrubTemplate == "" {
			fmt.Fprintf(stderr, "pxebootfs render: %s is a GRUB name, and %s sets no grub_template\n", f.name, cfg.File)
			return exitConfig
		}
		newCat = catalog.NewGRUB
	}
	cat, err := newCat(cfg, prov, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs render: %v\n", err)
		return exitConfig
	}
	cat.SetMountpoint(f.mountpoint)
	// A node in install mode renders its install or local template, with
	// its token: read from the registry without its lock, changing nothing.
	if reg, err := registry.OpenReadOnly(cfg.StateDir); err == nil {
		cat.SetInstaller(install.New(install.Options{Store: reg, CallbackURL: cfg.CallbackURL, MaxBoots: cfg.InstallMaxBoots}))
	}
	e, err := cat.Resolve(context.Background(), f.name)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs render: %v\n", err)
		return exitFailure
	}
	b, err := cat.Render(e)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs render: %v\n", err)
		return exitFailure
	}
	if _, err := stdout.Write(b); err != nil {
		fmt.Fprintf(stderr, "pxebootfs render: %v\n", err)
		return exitFailure
	}
	return exitOK
}
