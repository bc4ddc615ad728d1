package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/render"
	"github.com/pxebootfs/pxebootfs/internal/roots"
)

// runCheck validates the config and the environment and prints each
// problem on its own line; it exits 0 only if there is none: 3 if any is a
// problem of the config (a key, a file or directory it names), else 1 (the
// machine cannot run pxebootfs: FUSE, exportfs, overlays, Ganesha). It
// changes nothing, except for the short-lived test mounts of full-mode
// checks.
func runCheck(args []string, stdout, stderr io.Writer) int {
	c := newCmdline("check", "", stderr)
	if code := c.parse(args, 0, 0); code >= 0 {
		return code
	}
	// A config that does not load is check's first finding, reported
	// where every command reports it: on stderr, exit 3.
	cfg, code := c.load()
	if code >= 0 {
		return code
	}
	code = exitOK
	n := 0
	for _, p := range checkAll(cfg) {
		if p.note {
			fmt.Fprintln(stdout, "note: "+p.msg)
			continue
		}
		n++
		fmt.Fprintln(stdout, p.msg)
		switch {
		case p.config:
			code = exitConfig
		case code == exitOK:
			code = exitFailure
		}
	}
	if n > 0 {
		fmt.Fprintf(stdout, "%s: %d problem(s)\n", cfg.File, n)
		return code
	}
	mode := "config-only mode"
	if cfg.FullMode() {
		mode = "full mode"
	}
	fmt.Fprintf(stdout, "%s: ok (%s)\n", cfg.File, mode)
	return exitOK
}

// problem is one line of check's report. config: the config is wrong (exit
// 3); note: something to know that mount will take care of (no effect on
// the exit code); otherwise the machine is wrong (exit 1).
type problem struct {
	msg    string
	config bool
	note   bool
}

func checkAll(cfg *config.Config) []problem {
	var problems []problem
	add := func(config bool, format string, args ...any) {
		problems = append(problems, problem{msg: fmt.Sprintf(format, args...), config: config})
	}
	for _, lc := range cfg.Loaders() {
		if _, err := catalogOf(cfg, lc, catalog.Options{}); err != nil {
			add(true, "%v", err)
			continue
		}
		for r, path := range lc.Templates {
			if path == "" {
				continue
			}
			key := lc.Keys.Templates[r]
			t, err := render.Load(path)
			if err != nil {
				continue // catalog.New said so
			}
			d := render.SampleData()
			if cfg.TFTPRoot != "" {
				// Whether the images exist the catalog's trial render
				// checked, against the index.
				d.SetImages(render.SampleImage)
			}
			if _, err := t.Render(d); err != nil {
				add(true, "%s %s: %v", key, path, err)
			}
		}
	}
	if cfg.StaticDir != "" {
		if _, err := os.ReadDir(cfg.StaticDir); err != nil {
			add(true, "static_dir: %v", err)
		}
	}
	if err := config.CheckDirs(cfg); err != nil {
		add(true, "%v", err)
	}
	if err := checkFUSE(); err != nil {
		add(false, "%v", err)
	}
	for _, lc := range cfg.Loaders() {
		if lc.Mount == "" {
			continue
		}
		if _, err := os.Stat(lc.Mount); errors.Is(err, fs.ErrNotExist) {
			problems = append(problems, problem{msg: fmt.Sprintf("%s %s does not exist yet; pxebootfs mount creates it", lc.Keys.Mount, lc.Mount), note: true})
		}
	}
	for _, msg := range grubShadows(cfg) {
		problems = append(problems, problem{msg: msg, note: true})
	}
	for _, msg := range installCoverage(cfg) {
		problems = append(problems, problem{msg: msg, note: true})
	}
	for _, msg := range checkRoots(cfg) {
		add(true, "%s", msg)
	}
	full, notes := checkFull(cfg)
	for _, msg := range full {
		add(false, "%s", msg)
	}
	for _, msg := range notes {
		problems = append(problems, problem{msg: msg, note: true})
	}
	return problems
}

// checkRoots checks that every root a node may be given exists: the
// config's root and the inventory's have a current generation, and the
// generation every registered node is pinned to is still there (a node
// pinned to a missing one could not be remounted).
func checkRoots(cfg *config.Config) []string {
	if !cfg.FullMode() {
		return nil
	}
	st := rootStore(cfg)
	var out []string
	want := map[string]string{} // root -> who names it
	if cfg.Root != "" {
		want[cfg.Root] = "[PXEBOOTFS] root"
	}
	if lcs := cfg.Loaders(); len(lcs) > 0 {
		if cat, err := catalogOf(cfg, lcs[0], catalog.Options{}); err == nil {
			for _, n := range cat.InventoryNodes() {
				if n.Root != "" && want[n.Root] == "" {
					want[n.Root] = fmt.Sprintf("inventory [node %q] root", n.Name)
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if _, err := st.Current(name); err != nil {
			out = append(out, fmt.Sprintf("%s: %v", want[name], err))
		}
	}
	pins, err := pinsOf(cfg)
	if err != nil {
		return append(out, fmt.Sprintf("registry: %v", err))
	}
	for _, p := range slices.SortedFunc(maps.Keys(pins), func(a, b roots.Pin) int { return strings.Compare(a.String(), b.String()) }) {
		if _, err := st.Locate(p); err != nil {
			out = append(out, fmt.Sprintf("nodes %s are pinned to %v", nodeList(pins[p]), err))
		}
	}
	return out
}

// checkFUSE verifies /dev/fuse is a usable character device.
func checkFUSE() error {
	fi, err := os.Stat("/dev/fuse")
	if err != nil {
		return fmt.Errorf("/dev/fuse: %w (is the fuse module loaded? install fuse3)", err)
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		return fmt.Errorf("/dev/fuse is not a character device")
	}
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("/dev/fuse: cannot open for reading and writing: %w (pxebootfs runs as root)", err)
	}
	syscall.Close(fd)
	return nil
}

// grubShadows warns of static files that keep GRUB from the built-in
// grub.cfg, which chains to each node's own config: a grub.cfg of
// grub_static_dir is served instead of it, and Debian's signed network
// GRUB (the Secure Boot chain) sources $prefix/x86_64-efi/grub.cfg instead
// when that exists.
func grubShadows(cfg *config.Config) []string {
	if cfg.GrubStaticDir == "" {
		return nil
	}
	var notes []string
	for _, name := range []string{"grub.cfg", "x86_64-efi/grub.cfg"} {
		if _, err := os.Lstat(filepath.Join(cfg.GrubStaticDir, name)); err == nil {
			notes = append(notes, fmt.Sprintf("grub_static_dir has %s: GRUB reads it instead of the built-in grub.cfg that chains to each node's grub.cfg-… (unless it chains itself)", name))
		}
	}
	return notes
}

// installCoverage notes the loaders that have no install template while
// another has one: a node in install mode asking through them (a UEFI node
// under GRUB) is served its usual config, not the installer.
func installCoverage(cfg *config.Config) []string {
	var with, without []config.LoaderConfig
	for _, lc := range cfg.Loaders() {
		if lc.Templates[config.RoleInstall] != "" {
			with = append(with, lc)
		} else {
			without = append(without, lc)
		}
	}
	if len(with) == 0 {
		return nil
	}
	var notes []string
	for _, lc := range without {
		notes = append(notes, fmt.Sprintf("%s is set but %s is not: a node in install mode asking for its %s config is served its usual one (unless the inventory gives it its own %s)",
			with[0].Keys.Templates[config.RoleInstall], lc.Keys.Templates[config.RoleInstall], lc.Keys.Loader, lc.Keys.Inventory[config.RoleInstall]))
	}
	return notes
}
