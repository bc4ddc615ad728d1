package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/control"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/provision"
)

func TestParseNode(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"C0A80102", "C0A80102"},
		{"c0a80102", "C0A80102"},
		{"192.168.1.2", "C0A80102"},
		{"10.0.0.1", "0A000001"},
		{"C0A8010", ""},
		{"C0A801022", ""},
		{"+0A80102", ""},
		{"01-52-54-00-12-34-56", ""},
		{"::1", ""},
		{"../etc", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var stderr strings.Builder
			got, code := parseNodes("reset", []string{tt.in}, &stderr)
			if tt.want == "" {
				if code != exitUsage || !strings.Contains(stderr.String(), strconv.Quote(tt.in)) {
					t.Errorf("parseNodes(%q) = %v, exit %d, %q; want exit %d naming the argument", tt.in, got, code, stderr.String(), exitUsage)
				}
				return
			}
			if code != -1 || len(got) != 1 || got[0].String() != tt.want {
				t.Errorf("parseNodes(%q) = %v, exit %d, %q; want %s", tt.in, got, code, stderr.String(), tt.want)
			}
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args  []string
		pos   []string
		force bool
		code  int
	}{
		{[]string{"-force", "A", "B"}, []string{"A", "B"}, true, -1},
		{[]string{"A", "-force", "B"}, []string{"A", "B"}, true, -1},
		{[]string{"A", "B", "-force"}, []string{"A", "B"}, true, -1},
		{[]string{"A", "-c", "x.cfg", "B"}, []string{"A", "B"}, false, -1},
		{[]string{"A", "-bogus"}, nil, false, exitUsage},
		{[]string{"-force", "--", "-A", "B"}, []string{"-A", "B"}, true, -1},
		{[]string{"A", "--", "-force"}, []string{"A", "-force"}, false, -1},
		{[]string{"-h"}, nil, false, exitOK},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fl := newFlagSet("reset", "NODE...", &bytes.Buffer{})
			force := fl.Bool("force", false, "")
			fl.String("c", "", "")
			code := parseFlags(fl, tt.args)
			var pos []string
			if code < 0 {
				pos = fl.Args()
			}
			if code != tt.code || !slices.Equal(pos, tt.pos) || (code < 0 && *force != tt.force) {
				t.Errorf("got %q, code %d, force %v; want %q, %d, %v", pos, code, *force, tt.pos, tt.code, tt.force)
			}
		})
	}
}

func TestExitFor(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{fmt.Errorf("x: %w", control.ErrNotRunning), exitNoDaemon},
		{fmt.Errorf("x: %w", control.ErrPermission), exitPermission},
		{fmt.Errorf("open: %w", os.ErrPermission), exitPermission},
		{&control.Error{Code: control.CodeUnknownNode, Msg: "x"}, exitUnknownNode},
		{&control.Error{Code: control.CodeRefused, Msg: "x"}, exitRefused},
		{&control.Error{Code: control.CodeBadRequest, Msg: "x"}, exitUsage},
		{&control.Error{Code: control.CodeFailed, Msg: "x"}, exitFailure},
	}
	for _, tt := range tests {
		name := "nil"
		if tt.err != nil {
			name = tt.err.Error()
		}
		t.Run(name, func(t *testing.T) {
			if got := exitFor(tt.err); got != tt.want {
				t.Errorf("exitFor = %d, want %d", got, tt.want)
			}
		})
	}
}

// The exit codes stay distinct, so scripts can tell the cases apart.
// TestExitCodesREADME checks the README's exit-code table against
// exitCodes: every code once, with the same meaning, and no code missing.
func TestExitCodesREADME(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "### Exit codes\n")
	if !ok {
		t.Fatal("README has no \"### Exit codes\" section")
	}
	table, _, _ = strings.Cut(table, "\n\n#")
	rows := map[int]string{}
	for _, line := range strings.Split(table, "\n") {
		f := strings.SplitN(line, "|", 4)
		if len(f) != 4 {
			continue
		}
		code, err := strconv.Atoi(strings.TrimSpace(f[1]))
		if err != nil {
			continue // header
		}
		if _, dup := rows[code]; dup {
			t.Errorf("README lists exit code %d twice", code)
		}
		rows[code] = strings.TrimSpace(f[2])
	}
	seen := map[int]bool{}
	for _, c := range exitCodes {
		if seen[c.code] {
			t.Errorf("exit code %d defined twice", c.code)
		}
		seen[c.code] = true
		if got, ok := rows[c.code]; !ok {
			t.Errorf("README does not list exit code %d", c.code)
		} else if got != c.meaning {
			t.Errorf("README says exit %d means %q; exit.go says %q", c.code, got, c.meaning)
		}
	}
	for code := range rows {
		if !seen[code] {
			t.Errorf("README lists exit code %d, which the program never uses", code)
		}
	}
}

func TestWithCode(t *testing.T) {
	tests := []struct {
		err  error
		want control.Code
	}{
		{fmt.Errorf("reset X: %w", provision.ErrUnknownNode), control.CodeUnknownNode},
		{fmt.Errorf("reset X: %w", provision.ErrRecentBoot), control.CodeRefused},
		{errors.New("mount failed"), control.CodeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			err := withCode(tt.err)
			if got := control.CodeOf(err); got != tt.want || err.Error() != tt.err.Error() {
				t.Errorf("withCode = %v (code %s), want code %s and the same message", err, got, tt.want)
			}
		})
	}
	if withCode(nil) != nil {
		t.Error("withCode(nil) is not nil")
	}
}

func TestPrintNodes(t *testing.T) {
	yes, no := true, false
	boot := time.Date(2030, 1, 2, 3, 4, 5, 0, time.Local)
	nodes := []control.NodeStatus{
		{Node: node.MustParse("C0A80102"), IP: netip.MustParseAddr("192.168.1.2"), MAC: "52:54:00:12:34:56", FSID: 10000, Root: "debian", RootGeneration: "0123456789ab", Mounted: &yes, Exported: &yes, Created: boot, LastBoot: boot, BootCount: 3},
		{Node: node.MustParse("C0A80103"), IP: netip.MustParseAddr("192.168.1.3"), FSID: 10001, Root: "root_dir", RootGeneration: "dir", Mounted: &no, Exported: nil, Created: boot, LastError: "exportfs: failed\n  badly"},
		{Node: node.MustParse("C0A80104"), IP: netip.MustParseAddr("192.168.1.4"), Created: boot, Install: "install", InstallChanged: boot, InstallLoop: true, InstallError: "no disk"},
	}
	var b bytes.Buffer
	printNodes(&b, nodes, true, false)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	for i, want := range [][]string{
		{"NODE", "IP", "MAC", "FSID", "ROOT", "MOUNTED", "EXPORTED", "CREATED", "LAST", "BOOT", "BOOTS", "INSTALL", "SINCE", "LAST", "ERROR"},
		{"C0A80102", "192.168.1.2", "52:54:00:12:34:56", "10000", "debian/0123456789ab", "yes", "yes", "2030-01-02", "03:04:05", "2030-01-02", "03:04:05", "3", "-", "-", "-"},
		{"C0A80103", "192.168.1.3", "-", "10001", "root_dir/dir", "no", "?", "2030-01-02", "03:04:05", "-", "0", "-", "-", "exportfs:", "failed", "badly"},
		{"C0A80104", "192.168.1.4", "-", "-", "-", "?", "?", "2030-01-02", "03:04:05", "-", "0", "install", "install-loop?", "2030-01-02", "03:04:05", "installer:", "no", "disk"},
	} {
		if got := strings.Fields(lines[i]); !slices.Equal(got, want) {
			t.Errorf("line %d = %q, want fields %q", i, lines[i], want)
		}
	}
	b.Reset()
	printNodes(&b, nodes[1:], true, true)
	if f := strings.Fields(strings.Split(b.String(), "\n")[1]); len(f) < 7 || f[6] != "-" {
		t.Errorf("with export none, unknown export is not '-':\n%s", b.String())
	}
	b.Reset()
	printNodes(&b, nodes[2:], false, false)
	want := []string{"C0A80104", "192.168.1.4", "-", "2030-01-02", "03:04:05", "install", "install-loop?", "2030-01-02", "03:04:05", "installer:", "no", "disk"}
	if f := strings.Fields(strings.Split(b.String(), "\n")[1]); !slices.Equal(f, want) {
		t.Errorf("config-only mode row %q, want %q", f, want)
	}
}

// Admin commands check their arguments before looking for a daemon.
func TestAdminCommandLines(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "t")
	os.WriteFile(tmpl, []byte("<NODE>\n"), 0o644)
	configOnly := filepath.Join(dir, "c.cfg")
	os.WriteFile(configOnly, []byte("[PXEBOOTFS]\npxe_template: t\nstate_dir = "+filepath.Join(dir, "state")+"\n"), 0o644)
	tests := []struct {
		args []string
		code int
		want string // in stderr
	}{
		{[]string{"reset"}, exitUsage, "name at least one NODE"},
		{[]string{"reset", "-c", configOnly, "bogus"}, exitUsage, `"bogus" is not a node`},
		{[]string{"release", "-c", configOnly, "C0A80102", "-bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"nodes", "-c", configOnly, "extra"}, exitUsage, "usage: pxebootfs nodes"},
		{[]string{"reload", "-c", filepath.Join(dir, "missing.cfg")}, exitConfig, "missing.cfg"},
		{[]string{"install", "-c", configOnly}, exitUsage, "name at least one NODE"},
		{[]string{"install", "-c", configOnly, "C0A80102"}, exitNoDaemon, "no pxebootfs daemon"},
		{[]string{"installed", "-c", configOnly, "x"}, exitUsage, `"x" is not a node`},
		{[]string{"reset", "-c", configOnly, "C0A80102"}, exitRefused, "config-only mode"},
		{[]string{"reload", "-c", configOnly}, exitNoDaemon, "no pxebootfs daemon"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// TestCommandsREADME: every command `pxebootfs -h` lists has a row of its
// own in the README's command tables, and every image subcommand too.
func TestCommandsREADME(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "| `pxebootfs ") {
			rows = append(rows, l)
		}
	}
	listed := func(prefix string) bool {
		for _, r := range rows {
			if strings.HasPrefix(r, "| `pxebootfs "+prefix+" ") || strings.HasPrefix(r, "| `pxebootfs "+prefix+"`") {
				return true
			}
		}
		return false
	}
	for _, c := range commands() {
		if !listed(c.name) {
			t.Errorf("README has no row for pxebootfs %s", c.name)
		}
	}
	var help bytes.Buffer
	runImage([]string{"-h"}, &help, &help)
	for _, l := range strings.Split(help.String(), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(l, "  ") && !listed("image "+f[0]) {
			t.Errorf("README has no row for pxebootfs image %s", f[0])
		}
	}
}
