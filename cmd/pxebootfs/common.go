package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/pxebootfs/pxebootfs/config"
)

// newFlagSet makes a subcommand's flag set that reports errors instead of
// exiting, so exit codes stay in exit.go.
func newFlagSet(name, args string, stderr io.Writer) *flag.FlagSet {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		flags := 0
		fl.VisitAll(func(*flag.Flag) { flags++ })
		if flags == 0 {
			fmt.Fprintln(stderr, strings.TrimSpace("usage: pxebootfs "+name+" "+args))
			return
		}
		fmt.Fprintf(stderr, "usage: pxebootfs %s [flags] %s\n\nflags:\n", name, args)
		fl.PrintDefaults()
	}
	return fl
}

// parseFlags parses args, flags wherever they stand among the positional
// arguments (`render NAME -c FILE` as `render -c FILE NAME`; after "--"
// everything is positional): one rule for every command. The positional
// arguments are then fl.Args(). It returns a non-negative exit code when
// the command should stop (after -h, or on a bad flag).
func parseFlags(fl *flag.FlagSet, args []string) int {
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitUsage
		}
		rest := fl.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	// Leave exactly the positional arguments in fl.Args().
	if err := fl.Parse(append([]string{"--"}, pos...)); err != nil {
		return exitUsage
	}
	return -1
}

const configFlagHelp = "config file (default: first of ./pxebootfs.cfg, ~/.pxebootfs.cfg, /etc/pxebootfs/pxebootfs.cfg)"

// loadConfig finds and loads the config, printing a one-line error.
func loadConfig(path string, stderr io.Writer) (*config.Config, int) {
	p, err := config.Find(path)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs: %v\n", err)
		return nil, exitConfig
	}
	cfg, err := config.Load(p)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs: %v\n", err)
		return nil, exitConfig
	}
	return cfg, -1
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// cmdline is the start every subcommand shares: its flag set with -c for
// the config file, flags anywhere among the arguments (parseFlags), and
// the number of positional arguments checked against its usage.
type cmdline struct {
	*flag.FlagSet
	config string
	stderr io.Writer
}

// newCmdline makes subcommand name's start; args is its usage after the
// flags. The command adds its own flags to it before parse.
func newCmdline(name, args string, stderr io.Writer) *cmdline {
	c := &cmdline{FlagSet: newFlagSet(name, args, stderr), stderr: stderr}
	c.StringVar(&c.config, "c", "", configFlagHelp)
	return c
}

// parse parses args and checks that from min to max positional arguments
// remain (max < 0: no limit), printing the usage otherwise. It returns an
// exit code when the command should stop, else -1.
func (c *cmdline) parse(args []string, min, max int) int {
	if code := parseFlags(c.FlagSet, args); code >= 0 {
		return code
	}
	if n := c.NArg(); n < min || (max >= 0 && n > max) {
		c.Usage()
		return exitUsage
	}
	return -1
}

// load loads the config named by -c, or the first one found.
func (c *cmdline) load() (*config.Config, int) { return loadConfig(c.config, c.stderr) }
