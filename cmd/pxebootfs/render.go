package main

import (
	"context"
	"fmt"
	"io"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/loader"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

type renderFlags struct {
	name       string
	mountpoint string
	loader     string
}

// runRender prints exactly the bytes a read of NAME would return, in the
// directory of the loader NAME belongs to (pxelinux.cfg, or GRUB's for
// grub.cfg… names). It never provisions: it does not even open the state's lock.
func runRender(args []string, stdout, stderr io.Writer) int {
	var f renderFlags
	c := newCmdline("render", "NAME  (a pxelinux.cfg name such as C0A80102 or 01-aa-bb-cc-dd-ee-ff, or a grub.cfg… name of the GRUB mount)", stderr)
	c.StringVar(&f.mountpoint, "mountpoint", catalog.DefaultMountpoint, "where pxebootfs is mounted: content_generator gets --file MOUNTPOINT/NAME")
	c.StringVar(&f.loader, "loader", "", "the loader whose directory NAME is in (pxelinux, grub, ipxe); default: grub for grub.cfg… names, else pxelinux")
	if code := c.parse(args, 1, 1); code >= 0 {
		return code
	}
	f.name = c.Arg(0)
	cfg, code := c.load()
	if code >= 0 {
		return code
	}
	prov, err := newPeeker(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs render: %v\n", err)
		return exitFailure
	}
	ld, err := loaderOf(cfg, f.name, f.loader)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs render: %v\n", err)
		return exitConfig
	}
	opts := catalog.Options{Prov: prov, Mountpoint: f.mountpoint}
	// A node in install mode renders its install or local template, with
	// its token: read from the registry without its lock, changing nothing.
	if reg, err := registry.OpenReadOnly(cfg.StateDir); err == nil {
		opts.Inst = install.New(install.Options{Store: reg, CallbackURL: cfg.CallbackURL, MaxBoots: cfg.InstallMaxBoots})
	}
	cat, err := catalog.New(ld, cfg, opts)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs render: %v\n", err)
		return exitConfig
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

// loaderOf is the loader whose directory name is in: the one named by
// -loader, else the first loader with a prefix that owns it, else pxelinux.
// A name of a loader cfg does not configure is a config error naming the
// key that would.
func loaderOf(cfg *config.Config, name, want string) (*loader.Loader, error) {
	if want != "" {
		l, err := loader.ByName(want)
		if err != nil {
			return nil, err
		}
		if _, ok := cfg.Loader(l.Name); !ok {
			return nil, fmt.Errorf("%s sets no %s", cfg.File, config.KeysOf(l.Name).Templates[config.RoleUsual])
		}
		return l, nil
	}
	for _, l := range loader.All {
		if l.Prefix == "" || !l.Owns(name) {
			continue
		}
		if _, ok := cfg.Loader(l.Name); !ok {
			return nil, fmt.Errorf("%s is a %s name, and %s sets no %s", name, l.Name, cfg.File, config.KeysOf(l.Name).Templates[config.RoleUsual])
		}
		return l, nil
	}
	return loader.PXELinux, nil
}
