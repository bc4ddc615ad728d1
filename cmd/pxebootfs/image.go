package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/image"
)

// runImage dispatches `pxebootfs image SUBCOMMAND`. The image commands work
// with or without a running daemon: they change images_dir and the index
// in state_dir under its lock, and a running daemon follows the index
// within a second.
func runImage(args []string, stdout, stderr io.Writer) int {
	subs := []command{
		{"import", "import a version (NAME FILE=SOURCE…) and make it current", runImageImport},
		{"use", "make a kept version current (NAME VERSION): roll back or forward", runImageUse},
		{"list", "list versions: current, files, sizes, imported, last served", runImageList},
		{"remove", "remove a version (NAME VERSION) or a whole image (NAME)", runImageRemove},
		{"prune", "remove old versions now (the daemon prunes every 10 minutes)", runImagePrune},
	}
	return runSubcommand("image", subs, args, stdout, stderr)
}

// runSubcommand runs the subcommand of group named by args[0], or prints
// the group's usage (on stdout for -h, exit 0; else on stderr, exit 2).
func runSubcommand(group string, subs []command, args []string, stdout, stderr io.Writer) int {
	for _, c := range subs {
		if len(args) > 0 && args[0] == c.name {
			return c.run(args[1:], stdout, stderr)
		}
	}
	w, code := stderr, exitUsage
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
		w, code = stdout, exitOK
	}
	fmt.Fprintf(w, "usage: pxebootfs %s SUBCOMMAND [flags] [args]\n\nsubcommands:\n", group)
	for _, c := range subs {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'pxebootfs %s SUBCOMMAND -h' for its flags.\n", group)
	return code
}

// imageStore loads the config and opens its image store.
func imageStore(path string, stderr io.Writer) (*config.Config, *image.Store, int) {
	cfg, code := loadConfig(path, stderr)
	if code >= 0 {
		return nil, nil, code
	}
	if cfg.TFTPRoot == "" {
		fmt.Fprintf(stderr, "pxebootfs: %s: [PXEBOOTFS] tftp_root: not set; boot images need it\n", cfg.File)
		return nil, nil, exitConfig
	}
	st, err := image.FromConfig(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs: %s: %v\n", cfg.File, err)
		return nil, nil, exitConfig
	}
	return cfg, st, -1
}

// imageFailed prints err and picks the exit code.
func imageFailed(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "pxebootfs: %v\n", err)
	if errors.Is(err, image.ErrInGrace) {
		return exitRefused
	}
	return exitFailure
}

// repeated collects a repeatable flag.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func runImageImport(args []string, stdout, stderr io.Writer) int {
	var sums string
	var shas repeated
	var maxSize int64
	var timeout time.Duration
	c := newCmdline("image import", "NAME FILE=SOURCE [FILE=SOURCE…]", stderr)
	c.Var(&shas, "sha256", "FILE=HEX: expected sha256 of FILE (repeatable)")
	c.StringVar(&sums, "sha256sums", "", "a sha256sum file (path or URL) naming the files or their sources")
	c.Int64Var(&maxSize, "max-size", image.DefaultMaxSize, "largest file accepted, in bytes")
	c.DurationVar(&timeout, "timeout", image.DefaultTimeout, "longest HTTP download of one file")
	if code := c.parse(args, 2, -1); code >= 0 {
		return code
	}
	o := image.ImportOptions{Name: c.Arg(0), SHA256: map[string]string{}, SHA256Sums: sums, MaxSize: maxSize, Timeout: timeout}
	for _, a := range c.Args()[1:] {
		file, src, ok := strings.Cut(a, "=")
		if !ok {
			fmt.Fprintf(stderr, "pxebootfs image import: %q is not FILE=SOURCE\n", a)
			return exitUsage
		}
		o.Sources = append(o.Sources, image.Source{File: file, From: src})
	}
	for _, a := range shas {
		file, h, ok := strings.Cut(a, "=")
		if !ok {
			fmt.Fprintf(stderr, "pxebootfs image import: -sha256 %q is not FILE=HEX\n", a)
			return exitUsage
		}
		o.SHA256[file] = h
	}
	cfg, st, code := imageStore(c.config, stderr)
	if code >= 0 {
		return code
	}
	if isTerminal(stderr) {
		o.Progress = stderr
	} else {
		o.Log = newLogger(stderr, slog.LevelInfo)
	}
	ctx, stop := adminContext()
	defer stop()
	res, err := st.Import(ctx, o)
	if err != nil {
		return imageFailed(stderr, err)
	}
	if err := shareImage(ctx, cfg, st, o.Name, res.Version); err != nil {
		fmt.Fprintf(stderr, "pxebootfs image import: %s: imported and current here, but not made the cluster's: %v\n", o.Name, err)
		return exitFailure
	}
	switch {
	case !res.Created && res.Previous == res.Version:
		fmt.Fprintf(stdout, "%s: identical to the current version %s; nothing imported\n", o.Name, res.Version)
	case !res.Created:
		fmt.Fprintf(stdout, "%s: version %s was already imported; it is current again (was %s)\n", o.Name, res.Version, orNone(res.Previous))
	default:
		fmt.Fprintf(stdout, "%s: imported version %s (%d bytes downloaded); now current (was %s)\n", o.Name, res.Version, res.Fetched, orNone(res.Previous))
	}
	return exitOK
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// imageArgs is the start of use/remove/list/prune: the shared one, from
// min to max positional arguments, and the image store.
func imageArgs(name, usage string, args []string, min, max int, stderr io.Writer, extra func(*flag.FlagSet)) (*flag.FlagSet, *config.Config, *image.Store, int) {
	c := newCmdline("image "+name, usage, stderr)
	if extra != nil {
		extra(c.FlagSet)
	}
	if code := c.parse(args, min, max); code >= 0 {
		return nil, nil, nil, code
	}
	cfg, st, code := imageStore(c.config, stderr)
	return c.FlagSet, cfg, st, code
}

func runImageUse(args []string, stdout, stderr io.Writer) int {
	fl, cfg, st, code := imageArgs("use", "NAME VERSION", args, 2, 2, stderr, nil)
	if code >= 0 {
		return code
	}
	prev, err := st.Use(fl.Arg(0), fl.Arg(1), time.Now())
	if err != nil {
		return imageFailed(stderr, err)
	}
	ctx, stop := adminContext()
	defer stop()
	if err := shareImage(ctx, cfg, st, fl.Arg(0), fl.Arg(1)); err != nil {
		fmt.Fprintf(stderr, "pxebootfs image use: %s: current here, but not made the cluster's: %v\n", fl.Arg(0), err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: version %s is current (was %s)\n", fl.Arg(0), fl.Arg(1), orNone(prev))
	return exitOK
}

func runImageRemove(args []string, stdout, stderr io.Writer) int {
	var force bool
	fl, cfg, st, code := imageArgs("remove", "NAME [VERSION]", args, 1, 2, stderr, func(fl *flag.FlagSet) {
		fl.BoolVar(&force, "force", false, "remove even a version served within image_grace (a node may be booting it)")
	})
	if code >= 0 {
		return code
	}
	if held := heldByRoots(cfg); held != nil {
		if ix, err := st.Load(); err == nil && ix.Images[fl.Arg(0)] != nil {
			for v := range ix.Images[fl.Arg(0)].Versions {
				if (fl.Arg(1) == "" || fl.Arg(1) == v) && held(image.VersionRef{Image: fl.Arg(0), Version: v}) {
					fmt.Fprintf(stderr, "pxebootfs: image %s version %s is the kernel of a kept generation of root %s; remove the generation first (pxebootfs root list %s)\n", fl.Arg(0), v, fl.Arg(0), fl.Arg(0))
					return exitRefused
				}
			}
		}
	}
	removed, err := st.Remove(fl.Arg(0), fl.Arg(1), cfg.ImageGrace, force, time.Now())
	if err != nil {
		return imageFailed(stderr, err)
	}
	fmt.Fprintf(stdout, "%s: removed %s\n", fl.Arg(0), strings.Join(removed, " "))
	return exitOK
}

func runImagePrune(args []string, stdout, stderr io.Writer) int {
	_, cfg, st, code := imageArgs("prune", "", args, 0, 0, stderr, nil)
	if code >= 0 {
		return code
	}
	removed, err := st.Prune(image.Policy{Keep: cfg.ImageKeep, Grace: cfg.ImageGrace, Held: heldByRoots(cfg)}, time.Now())
	if err != nil {
		return imageFailed(stderr, err)
	}
	printRemoved(stdout, removed)
	return exitOK
}

func runImageList(args []string, stdout, stderr io.Writer) int {
	fl, _, st, code := imageArgs("list", "[NAME]", args, 0, 1, stderr, nil)
	if code >= 0 {
		return code
	}
	ix, err := st.Load()
	if err != nil {
		return imageFailed(stderr, err)
	}
	names := ix.Names()
	if fl.NArg() == 1 {
		if ix.Images[fl.Arg(0)] == nil {
			return imageFailed(stderr, fmt.Errorf("image %q: %w", fl.Arg(0), image.ErrNotFound))
		}
		names = []string{fl.Arg(0)}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tVERSION\tCURRENT\tIMPORTED\tLAST SERVED\tFILE\tSIZE\tSOURCE")
	for _, name := range names {
		for _, v := range ix.Versions(name) {
			ver := ix.Images[name].Versions[v]
			cur := ""
			if v == ix.Images[name].Current {
				cur = "*"
			}
			served := "never"
			if !ver.LastServed.IsZero() {
				served = ver.LastServed.Local().Format(time.DateTime)
			}
			for _, f := range ver.FileNames() {
				fi := ver.Files[f]
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", name, v, cur, ver.Imported.Local().Format(time.DateTime), served, f, fi.Size, fi.Source)
			}
		}
	}
	tw.Flush()
	return exitOK
}

// printRemoved reports a prune: what went, by image or root.
func printRemoved(stdout io.Writer, removed map[string][]string) {
	n := 0
	for name, vs := range removed {
		n += len(vs)
		fmt.Fprintf(stdout, "%s: removed %s\n", name, strings.Join(vs, " "))
	}
	if n == 0 {
		fmt.Fprintln(stdout, "nothing to remove")
	}
}

// isTerminal reports whether w is a terminal (progress bars) rather than a
// log (one line per file).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
