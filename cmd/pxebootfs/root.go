package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/cluster"
	"github.com/pxebootfs/pxebootfs/internal/image"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
	"github.com/pxebootfs/pxebootfs/internal/roots"
)

// runRoot dispatches `pxebootfs root SUBCOMMAND`. Like the image commands,
// they work with or without a running daemon: generations are made and
// removed in roots_dir, the index in state_dir is changed under its lock,
// and which nodes are pinned where is read from the registry.
func runRoot(args []string, stdout, stderr io.Writer) int {
	subs := []command{
		{"import", "import a generation (NAME SOURCE: a directory or a tar, tar.gz, tar.zst) and make it current", runRootImport},
		{"use", "make a kept generation current (NAME GEN): roll back or forward", runRootUse},
		{"list", "list generations: current, size, imported when and from where, nodes pinned", runRootList},
		{"remove", "remove a generation (NAME GEN) or a whole root (NAME); never one a node is pinned to", runRootRemove},
		{"prune", "remove generations no node is pinned to, beyond root_keep and root_grace", runRootPrune},
		{"upgrade", "reset nodes onto their root's current generation (a reset: fresh layer, same fsid)", runRootUpgrade},
	}
	return runSubcommand("root", subs, args, stdout, stderr)
}

// rootArgs is the start of every root subcommand: flags, min to max
// positional arguments, the config and its root store.
func rootArgs(name, usage string, args []string, min, max int, stderr io.Writer, extra func(*flag.FlagSet)) (*cmdline, *config.Config, *roots.Store, int) {
	c := newCmdline("root "+name, usage, stderr)
	if extra != nil {
		extra(c.FlagSet)
	}
	if code := c.parse(args, min, max); code >= 0 {
		return nil, nil, nil, code
	}
	cfg, code := c.load()
	if code >= 0 {
		return nil, nil, nil, code
	}
	if !cfg.FullMode() {
		fmt.Fprintf(stderr, "pxebootfs: %s: roots are for full mode (node_dir, overlay_dir, start_fsid and roots_dir)\n", cfg.File)
		return nil, nil, nil, exitConfig
	}
	return c, cfg, rootStore(cfg), -1
}

// rootFailed prints err and picks the exit code: a generation nodes are
// pinned to is refused, not failed.
func rootFailed(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "pxebootfs: %v\n", err)
	if errors.Is(err, roots.ErrPinned) {
		return exitRefused
	}
	return exitFailure
}

// pinsOf reads which nodes are pinned to which generation from the registry
// (without its lock: the file is replaced whole).
func pinsOf(cfg *config.Config) (roots.Pins, error) {
	reg, err := registry.OpenReadOnly(cfg.StateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return roots.Pins{}, nil
	}
	if err != nil {
		return nil, err
	}
	return pinsFrom(reg.All()), nil
}

// pinsFrom lists the nodes of recs by the generation each is pinned to.
func pinsFrom(recs []registry.Record) roots.Pins {
	pins := roots.Pins{}
	for _, r := range recs {
		if r.FSID == 0 {
			continue // no layer: known for its install only
		}
		p := roots.Pin{Root: r.Root, Gen: r.RootGen}
		if p.IsLegacy() {
			p = roots.Pin{}
		}
		pins[p] = append(pins[p], r.ID.String())
	}
	return pins
}

func runRootImport(args []string, stdout, stderr io.Writer) int {
	var o roots.ImportOptions
	c, cfg, st, code := rootArgs("import", "NAME SOURCE", args, 2, 2, stderr, func(fl *flag.FlagSet) {
		fl.BoolVar(&o.NoKernelCheck, "no-kernel-check", false, "import a tree whose boot/vmlinuz-VERSION has no lib/modules/VERSION")
		fl.BoolVar(&o.Force, "force", false, "import a tree the bootability checks refuse (no init, an fstab that mounts /, a kernel without modules)")
		fl.StringVar(&o.Platform, "platform", "", "OS/ARCH[/VARIANT] to pick from a multi-platform image (default: this machine's)")
		fl.BoolVar(&o.InsecureRegistry, "insecure-registry", false, "allow plain HTTP to a registry that is not on a loopback address")
	})
	if code >= 0 {
		return code
	}
	if st.Dir() == "" {
		fmt.Fprintf(stderr, "pxebootfs root import: [PXEBOOTFS] roots_dir: not set; named roots live there\n")
		return exitConfig
	}
	o.Name, o.Source = c.Arg(0), c.Arg(1)
	if isTerminal(stderr) {
		o.Progress = stderr
	} else {
		o.Log = newLogger(stderr, slog.LevelInfo)
	}
	ctx, stop := adminContext()
	defer stop()
	if cfg.TFTPRoot != "" {
		ist, err := image.FromConfig(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "pxebootfs: %s: %v\n", cfg.File, err)
			return exitConfig
		}
		o.MakeBoot = func(dir, kernel, initrd string) (roots.BootImage, error) {
			return bootImage(ctx, ist, o.Name, dir, kernel, initrd, o.Log)
		}
	}
	res, err := st.Import(ctx, o)
	if err != nil {
		return rootFailed(stderr, err)
	}
	if err := shareRoot(ctx, cfg, st, o.Name, res.Gen, o); err != nil {
		fmt.Fprintf(stderr, "pxebootfs root import: %s: imported and current here, but not made the cluster's: %v\n", o.Name, err)
		return exitFailure
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stdout, "%s: note: %s\n", o.Name, n)
	}
	if res.Origin != nil {
		fmt.Fprintf(stdout, "%s: from %s, manifest %s, config %s, %s\n", o.Name, res.Origin.Ref, res.Origin.Digest, res.Origin.ConfigDigest, res.Origin.Platform)
	}
	kernel := ""
	switch {
	case res.Boot.Version != "":
		kernel = fmt.Sprintf("; kernel %s served as %s (.Kernel, .Initrd)", res.Kernel, res.Boot.Kernel)
	case res.Kernel != "":
		kernel = "; kernel " + res.Kernel + " (no tftp_root: not made a boot image)"
	}
	switch {
	case !res.Created && res.Previous == res.Gen:
		fmt.Fprintf(stdout, "%s: identical to the current generation %s; nothing imported\n", o.Name, res.Gen)
	case !res.Created:
		fmt.Fprintf(stdout, "%s: generation %s was already imported; it is current again (was %s)\n", o.Name, res.Gen, orNone(res.Previous))
	default:
		fmt.Fprintf(stdout, "%s: imported generation %s (%d entries, %d bytes%s), read-only; now current (was %s). New and reset nodes get it; running nodes keep theirs.\n",
			o.Name, res.Gen, res.Files, res.Size, kernel, orNone(res.Previous))
	}
	return exitOK
}

// bootImage makes a generation's kernel and initrd a version of the boot
// image named like the root, so that each node is served the kernel of the
// generation it is pinned to (.Kernel, .Initrd).
func bootImage(ctx context.Context, ist *image.Store, name, dir, kernel, initrd string, log *slog.Logger) (roots.BootImage, error) {
	srcs := []image.Source{{File: "vmlinuz", From: filepath.Join(dir, kernel)}}
	if initrd != "" {
		srcs = append(srcs, image.Source{File: "initrd.img", From: filepath.Join(dir, initrd)})
	}
	res, err := ist.Import(ctx, image.ImportOptions{Name: name, Sources: srcs, Log: log})
	if err != nil {
		return roots.BootImage{}, err
	}
	b := roots.BootImage{Version: res.Version, Kernel: path.Join(ist.Rel(), name, res.Version, "vmlinuz")}
	if initrd != "" {
		b.Initrd = path.Join(ist.Rel(), name, res.Version, "initrd.img")
	}
	return b, nil
}

// heldByRoots is the boot image versions made of root generations that are
// kept: image garbage collection leaves them, as nodes pinned to those
// generations boot their kernels.
func heldByRoots(cfg *config.Config) func(image.VersionRef) bool {
	if !cfg.FullMode() || cfg.RootsDir == "" {
		return nil
	}
	ix, err := rootStore(cfg).Load()
	if err != nil {
		// Unreadable: hold everything rather than pull a kernel.
		return func(image.VersionRef) bool { return true }
	}
	held := map[image.VersionRef]bool{}
	for name, r := range ix.Roots {
		for _, g := range r.Generations {
			if g.Boot.Version != "" {
				held[image.VersionRef{Image: name, Version: g.Boot.Version}] = true
			}
		}
	}
	return func(v image.VersionRef) bool { return held[v] }
}

func runRootUse(args []string, stdout, stderr io.Writer) int {
	c, cfg, st, code := rootArgs("use", "NAME GEN", args, 2, 2, stderr, nil)
	if code >= 0 {
		return code
	}
	prev, err := st.Use(c.Arg(0), c.Arg(1), time.Now())
	if err != nil {
		return rootFailed(stderr, err)
	}
	ctx, stop := adminContext()
	defer stop()
	if err := shareRoot(ctx, cfg, st, c.Arg(0), c.Arg(1), roots.ImportOptions{}); err != nil {
		fmt.Fprintf(stderr, "pxebootfs root use: %s: current here, but not made the cluster's: %v\n", c.Arg(0), err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: generation %s is current (was %s); new and reset nodes get it\n", c.Arg(0), c.Arg(1), orNone(prev))
	return exitOK
}

func runRootRemove(args []string, stdout, stderr io.Writer) int {
	var force bool
	c, cfg, st, code := rootArgs("remove", "NAME [GEN]", args, 1, 2, stderr, func(fl *flag.FlagSet) {
		fl.BoolVar(&force, "force", false, "remove even the current generation (never one a node is pinned to)")
	})
	if code >= 0 {
		return code
	}
	pins, err := pinsOf(cfg)
	if err != nil {
		return rootFailed(stderr, err)
	}
	removed, err := st.Remove(c.Arg(0), c.Arg(1), force, pins)
	if err != nil {
		return rootFailed(stderr, err)
	}
	fmt.Fprintf(stdout, "%s: removed %s\n", c.Arg(0), strings.Join(removed, " "))
	return exitOK
}

func runRootPrune(args []string, stdout, stderr io.Writer) int {
	_, cfg, st, code := rootArgs("prune", "", args, 0, 0, stderr, nil)
	if code >= 0 {
		return code
	}
	pins, err := pinsOf(cfg)
	if err != nil {
		return rootFailed(stderr, err)
	}
	removed, err := st.Prune(roots.Policy{Keep: cfg.RootKeep, Grace: cfg.RootGrace}, pins, time.Now())
	if err != nil {
		return rootFailed(stderr, err)
	}
	printRemoved(stdout, removed)
	return exitOK
}

func runRootList(args []string, stdout, stderr io.Writer) int {
	var asJSON bool
	c, cfg, st, code := rootArgs("list", "[NAME]", args, 0, 1, stderr, func(fl *flag.FlagSet) {
		fl.BoolVar(&asJSON, "json", false, "print a JSON array of generations")
	})
	if code >= 0 {
		return code
	}
	pins, err := pinsOf(cfg)
	if err != nil {
		return rootFailed(stderr, err)
	}
	ls, err := st.List(c.Arg(0), pins)
	if err != nil {
		return rootFailed(stderr, err)
	}
	if asJSON {
		b, err := json.MarshalIndent(ls, "", "  ")
		if err != nil {
			return rootFailed(stderr, err)
		}
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROOT\tGENERATION\tCURRENT\tNODES\tSIZE\tIMPORTED\tKERNEL\tSOURCE")
	for _, l := range ls {
		cur := ""
		if l.Current {
			cur = "*"
		}
		imported := "-"
		if !l.Imported.IsZero() {
			imported = l.Imported.Local().Format(time.DateTime)
		}
		src := l.Source
		if l.Image != nil {
			src += " " + l.Image.Digest + " " + l.Image.Platform
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", l.Name, l.Generation, cur, nodeList(l.Nodes), l.Size, imported, orDash(l.Kernel), src)
	}
	tw.Flush()
	if cfg.ClusterEndpoints != nil {
		return printClusterRoots(stdout, stderr, cfg, c.Arg(0))
	}
	return exitOK
}

// printClusterRoots shows, in cluster mode, each root's desired generation
// and what every server serves of it.
func printClusterRoots(stdout, stderr io.Writer, cfg *config.Config, only string) int {
	ctx, stop := adminContext()
	defer stop()
	cl, err := openCluster(ctx, cfg, false, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs root list: %v\n", err)
		return exitFailure
	}
	defer cl.Close()
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROOT\tCLUSTER'S\tSERVER\tCURRENT\tIMPORTING\tERROR")
	desired := cl.DesiredOf(cluster.KindRoots)
	for _, name := range slices.Sorted(maps.Keys(desired)) {
		if only != "" && name != only {
			continue
		}
		states := cl.States(cluster.KindRoots, name)
		for _, srv := range slices.Sorted(maps.Keys(states)) {
			st := states[srv]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, desired[name].Gen, srv, orDash(st.Current), orDash(st.Pending), orDash(oneLine(st.Error)))
		}
	}
	tw.Flush()
	return exitOK
}

// nodeList shows up to 4 pinned nodes and how many more.
func nodeList(nodes []string) string {
	switch {
	case len(nodes) == 0:
		return "-"
	case len(nodes) > 4:
		return fmt.Sprintf("%s +%d", strings.Join(nodes[:4], ","), len(nodes)-4)
	}
	return strings.Join(nodes, ",")
}

// runRootUpgrade resets nodes onto their root's current generation: a
// reset makes a fresh layer, and a fresh layer always takes the current
// generation. Under reset_guard like reset.
func runRootUpgrade(args []string, stdout, stderr io.Writer) int {
	var force bool
	var where string
	c := newCmdline("root upgrade", "[-where NAME=value] [-force] [NODE...]", stderr)
	c.BoolVar(&force, "force", false, "upgrade even a node that booted within reset_guard (its writable layer is wiped)")
	c.StringVar(&where, "where", "", "also every inventory node whose var.NAME is value (e.g. role=compute)")
	if code := c.parse(args, 0, -1); code >= 0 {
		return code
	}
	var nodes []node.ID
	if c.NArg() > 0 || where == "" {
		var code int
		if nodes, code = parseNodes("root upgrade", c.Args(), stderr); code >= 0 {
			return code
		}
	}
	cfg, code := adminConfig("root upgrade", c.config, stderr)
	if code >= 0 {
		return code
	}
	if where != "" {
		more, err := nodesWhere(cfg, where)
		if err != nil {
			fmt.Fprintf(stderr, "pxebootfs root upgrade: %v\n", err)
			return exitUsage
		}
		nodes = append(nodes, more...)
	}
	ctx, cancel := adminContext()
	defer cancel()
	results, err := controlClient(cfg).Reset(ctx, nodes, force)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs root upgrade: %v\n", err)
		return exitFor(err)
	}
	return report("root upgrade", results, func(node.ID) string {
		return "upgraded: fresh layer over its root's current generation, same fsid"
	}, stdout, stderr)
}

// nodesWhere lists the inventory nodes whose var.NAME is value.
func nodesWhere(cfg *config.Config, where string) ([]node.ID, error) {
	name, value, ok := strings.Cut(where, "=")
	if !ok || name == "" {
		return nil, fmt.Errorf("-where %q is not NAME=value", where)
	}
	lcs := cfg.Loaders()
	if len(lcs) == 0 {
		return nil, errors.New("no loader configured")
	}
	cat, err := catalogOf(cfg, lcs[0], catalog.Options{})
	if err != nil {
		return nil, err
	}
	var out []node.ID
	for _, n := range cat.InventoryNodes() {
		if v, ok := n.Vars[name]; ok && v == value {
			out = append(out, n.ID)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-where %s: no inventory node has var.%s = %s", where, name, value)
	}
	return out, nil
}
