package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/control"
	"github.com/pxebootfs/pxebootfs/internal/node"
)

// What the admin commands (nodes, reset, release, reload) share: they find
// the daemon through the config's state_dir and talk to it over the control
// socket.

// adminConfig loads the config of an admin command. Reset and release need
// full mode (roots); nodes, install, installed and reload work in both (the
// registry and the control socket live in state_dir).
func adminConfig(cmd, path string, stderr io.Writer) (*config.Config, int) {
	cfg, code := loadConfig(path, stderr)
	if code >= 0 {
		return nil, code
	}
	if !cfg.FullMode() && (cmd == "reset" || cmd == "release") {
		// Nothing is wrong with the config: the command does not apply.
		fmt.Fprintf(stderr, "pxebootfs %s: %s is a config-only mode config: nodes have no roots to %s\n", cmd, cfg.File, cmd)
		return nil, exitRefused
	}
	return cfg, -1
}

func controlClient(cfg *config.Config) *control.Client {
	return control.NewClient(control.SocketPath(cfg.StateDir))
}

// daemonClient is the control client of a command that only asks the
// running daemon (reload, nodes while one runs): when the config does not
// load, the daemon is still found through the file's state_dir, read
// alone, and asked; it then reports what is wrong with the config itself
// (a reload is rejected and logged). cfg is nil in that case, and the
// config's error has been printed as a warning.
func daemonClient(cmd, path string, stderr io.Writer) (c *control.Client, cfg *config.Config, code int) {
	var msg strings.Builder
	cfg, code = loadConfig(path, &msg)
	if code < 0 {
		return controlClient(cfg), cfg, -1
	}
	p, err := config.Find(path)
	var dir string
	if err == nil {
		dir, err = config.StateDirOf(p)
	}
	if err != nil {
		fmt.Fprint(stderr, msg.String())
		return nil, nil, code
	}
	fmt.Fprintf(stderr, "pxebootfs %s: warning: %s", cmd, strings.TrimPrefix(msg.String(), "pxebootfs: "))
	return control.NewClient(control.SocketPath(dir)), nil, -1
}

// adminContext is cancelled by ^C, which abandons the wait (the daemon
// finishes what it started).
func adminContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// parseNodes turns arguments into nodes: the hex name pxelinux asks for
// (either case) or the node's dotted IPv4 address.
func parseNodes(cmd string, args []string, stderr io.Writer) ([]node.ID, int) {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "pxebootfs %s: name at least one NODE (hex name such as C0A80102, or IPv4 address)\n", cmd)
		return nil, exitUsage
	}
	nodes := make([]node.ID, 0, len(args))
	for _, a := range args {
		id, err := node.Parse(a)
		if err != nil {
			fmt.Fprintf(stderr, "pxebootfs %s: %q is %v\n", cmd, a, err)
			return nil, exitUsage
		}
		nodes = append(nodes, id)
	}
	return nodes, -1
}

// exitFor maps an error from the daemon, or from reaching it, to an exit
// code.
func exitFor(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, control.ErrNotRunning):
		return exitNoDaemon
	case errors.Is(err, control.ErrPermission), errors.Is(err, os.ErrPermission):
		return exitPermission
	case errors.Is(err, control.ErrUnknownNode):
		return exitUnknownNode
	case errors.Is(err, control.ErrRefused):
		return exitRefused
	case errors.Is(err, control.ErrBadRequest):
		return exitUsage
	}
	return exitFailure
}

// report prints one line per node and returns the exit code of the first
// failure (0 if none).
func report(cmd string, results []control.Result, done func(id node.ID) string, stdout, stderr io.Writer) int {
	code := exitOK
	for _, r := range results {
		if err := r.Err(); err != nil {
			fmt.Fprintf(stderr, "pxebootfs %s: %s: %v\n", cmd, r.Node, err)
			if code == exitOK {
				code = exitFor(err)
			}
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", r.Node, done(r.Node))
	}
	return code
}

// runNodeCommand is what reset and release share once their flags are
// declared: flags anywhere among the NODE arguments, the daemon found
// through the config, one request for all nodes, and a line per node. call
// sends the request and says what success means for a node.
func runNodeCommand(c *cmdline, args []string, stdout, stderr io.Writer,
	call func(ctx context.Context, c *control.Client, nodes []node.ID) ([]control.Result, string, error)) int {
	cmd := c.Name()
	if code := c.parse(args, 0, -1); code >= 0 {
		return code
	}
	nodes, code := parseNodes(cmd, c.Args(), stderr)
	if code >= 0 {
		return code
	}
	cfg, code := adminConfig(cmd, c.config, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := adminContext()
	defer cancel()
	results, done, err := call(ctx, controlClient(cfg), nodes)
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs %s: %v\n", cmd, err)
		return exitFor(err)
	}
	return report(cmd, results, func(node.ID) string { return done }, stdout, stderr)
}
