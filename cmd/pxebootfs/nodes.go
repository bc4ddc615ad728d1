package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/control"
	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/provision"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

type nodesFlags struct {
	json bool
}

// runNodes lists the nodes: from the daemon if one runs, else from the
// registry on disk, with mounts and exports as found now.
func runNodes(args []string, stdout, stderr io.Writer) int {
	var f nodesFlags
	c := newCmdline("nodes", "", stderr)
	c.BoolVar(&f.json, "json", false, "print a JSON array instead of columns")
	if code := c.parse(args, 0, 0); code >= 0 {
		return code
	}
	client, cfg, code := daemonClient("nodes", c.config, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := adminContext()
	defer cancel()
	nodes, err := client.Nodes(ctx)
	if errors.Is(err, control.ErrNotRunning) && cfg == nil {
		// Reading the registry and the server's state needs the config.
		fmt.Fprintln(stderr, "pxebootfs nodes: no daemon is running, and without a config that loads the registry cannot be read alone")
		return exitConfig
	}
	if errors.Is(err, control.ErrNotRunning) {
		fmt.Fprintf(stderr, "pxebootfs nodes: no daemon is running; showing the registry in %s, with mounts and exports as found now\n", cfg.StateDir)
		nodes, err = offlineNodes(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pxebootfs nodes: %v\n", err)
		return exitFor(err)
	}
	if f.json {
		if nodes == nil {
			nodes = []control.NodeStatus{}
		}
		b, err := json.MarshalIndent(nodes, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "pxebootfs nodes: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	full, exportNone := fullModeOf(nodes), false
	if cfg != nil {
		full, exportNone = cfg.FullMode(), cfg.Export == config.ExportNone
	}
	printNodes(stdout, nodes, full, exportNone)
	return exitOK
}

// offlineNodes reads what it can without the daemon: the registry (without
// its lock), the mount table, and the exporter's list. What cannot be read
// shows as unknown.
func offlineNodes(ctx context.Context, cfg *config.Config) ([]control.NodeStatus, error) {
	reg, err := registry.OpenReadOnly(cfg.StateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // never mounted
	}
	if err != nil {
		return nil, err
	}
	inst := install.New(install.Options{Store: reg, MaxBoots: cfg.InstallMaxBoots})
	if !cfg.FullMode() {
		return installNodes(reg.All(), inst), nil
	}
	o := provision.Options{Registry: reg, NodeDir: cfg.NodeDir}
	if ov, err := newOverlay(cfg); err == nil {
		o.Overlay = ov
	}
	if ex, err := newExporter(cfg, slog.New(slog.DiscardHandler)); err == nil {
		o.Exporter = ex
		if c, ok := ex.(io.Closer); ok {
			defer c.Close()
		}
	}
	return toControlNodes(provision.New(o).Status(ctx), inst), nil
}

func printNodes(w io.Writer, nodes []control.NodeStatus, fullMode, exportNone bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// In cluster mode, an OWNER column: the server holding each root.
	owners := slices.ContainsFunc(nodes, func(n control.NodeStatus) bool { return n.Owner != "" })
	owner := func(n control.NodeStatus) string {
		if !owners {
			return ""
		}
		return orDash(n.Owner) + "\t"
	}
	if owners {
		fmt.Fprint(tw, "OWNER\t")
	}
	if fullMode {
		fmt.Fprint(tw, "NODE\tIP\tMAC\tFSID\tROOT\tMOUNTED\tEXPORTED\tCREATED\tLAST BOOT\tBOOTS\tINSTALL\tSINCE\tLAST ERROR\n")
	} else {
		fmt.Fprint(tw, "NODE\tIP\tMAC\tCREATED\tINSTALL\tSINCE\tLAST ERROR\n")
	}
	unknownExport := "?"
	if exportNone {
		unknownExport = "-"
	}
	for _, n := range nodes {
		state := orDash(n.Install)
		if n.InstallLoop {
			state += " install-loop?"
		}
		lastErr := n.LastError
		if n.InstallError != "" {
			lastErr = strings.TrimSpace("installer: " + n.InstallError + "; " + lastErr)
			lastErr = strings.TrimSuffix(lastErr, ";")
		}
		if !fullMode {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				n.Node, n.IP, orDash(n.MAC), when(n.Created), state, when(n.InstallChanged), orDash(oneLine(lastErr)))
			continue
		}
		fsid := "-" // known for its install only: no root yet
		if n.FSID != 0 {
			fsid = fmt.Sprint(n.FSID)
		}
		root := "-"
		if n.Root != "" {
			root = n.Root + "/" + n.RootGeneration
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n",
			owner(n), n.Node, n.IP, orDash(n.MAC), fsid, root, yesNo(n.Mounted, "?"), yesNo(n.Exported, unknownExport),
			when(n.Created), when(n.LastBoot), n.BootCount, state, when(n.InstallChanged), orDash(oneLine(lastErr)))
	}
	tw.Flush()
}

func yesNo(b *bool, unknown string) string {
	switch {
	case b == nil:
		return unknown
	case *b:
		return "yes"
	}
	return "no"
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a multi-line error (exportfs's stderr) on its row.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// fullModeOf tells from the daemon's answer whether it runs in full mode
// (for columns, when the config did not load): nodes there have roots.
func fullModeOf(nodes []control.NodeStatus) bool {
	for _, n := range nodes {
		if n.FSID != 0 || n.Mounted != nil {
			return true
		}
	}
	return false
}
