package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/render"
)

type checkFlags struct {
	config string
}

// runCheck validates the config and the environment and prints each
// problem on its own line; it exits 0 only if there is none. It changes
// nothing, except for the short-lived test mounts of full-mode checks.
func runCheck(args []string, stdout, stderr io.Writer) int {
	var f checkFlags
	fl := newFlagSet("check", "", stderr)
	fl.StringVar(&f.config, "c", "", configFlagHelp)
	if code := parseFlags(fl, args); code >= 0 {
		return code
	}
	if fl.NArg() != 0 {
		fl.Usage()
		return exitUsage
	}
	cfg, code := loadConfig(f.config, stdout)
	if code >= 0 {
		return exitFailure
	}
	problems := checkAll(cfg)
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stdout, "%s: %d problem(s)\n", cfg.File, len(problems))
		return exitFailure
	}
	mode := "config-only mode"
	if cfg.FullMode() {
		mode = "full mode"
	}
	fmt.Fprintf(stdout, "%s: ok (%s)\n", cfg.File, mode)
	return exitOK
}

func checkAll(cfg *config.Config) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if _, err := catalog.New(cfg, nil, slog.New(slog.DiscardHandler)); err != nil {
		add("%v", err)
	} else if t, err := render.Load(cfg.PXETemplate); err == nil {
		if _, err := t.Render(render.SampleData()); err != nil {
			add("pxe_template %s: %v", cfg.PXETemplate, err)
		}
	}
	if cfg.StaticDir != "" {
		if _, err := os.ReadDir(cfg.StaticDir); err != nil {
			add("static_dir: %v", err)
		}
	}
	if err := checkFUSE(); err != nil {
		add("%v", err)
	}
	problems = append(problems, checkFull(cfg)...)
	return problems
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
