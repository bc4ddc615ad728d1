package nfsexport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultOptions are the export options used when ExportfsOptions.Options is
// empty: a node's root is written by the node as root, and "sync" keeps its
// writes safe across a server crash. config takes export_options' default
// from here.
const DefaultOptions = "rw,no_root_squash,no_subtree_check,sync"

// Paths nfs-utils has compiled in.
const (
	DefaultEtcExports  = "/etc/exports"
	DefaultEtcExportsD = "/etc/exports.d"
	DefaultEtab        = "/var/lib/nfs/etab"
)

// cleanupTimeout bounds the best-effort removal of a failed export, which
// runs even when the caller's context is already done.
const cleanupTimeout = 30 * time.Second

// ExportfsOptions configures an Exportfs.
type ExportfsOptions struct {
	// Binary is the exportfs program: a path, or a name looked up in PATH
	// and then in /usr/sbin and /sbin. Default "exportfs".
	Binary string
	// Options are the export options, without fsid (Export appends
	// ",fsid=N"). Default DefaultOptions.
	Options string
	// ExportsFile, when not empty, is a file of ours, normally in
	// /etc/exports.d (e.g. /etc/exports.d/pxebootfs.exports), in which
	// every export is also recorded as "PATH IP(OPTIONS,fsid=N)", so that
	// `exportfs -ra` keeps it. Its name must end in ".exports" and not
	// start with "." (exportfs ignores other files there). Its directory
	// is created if missing. It is rewritten atomically on every change.
	// When it lies in EtcExportsD, exports are batched: concurrent Export
	// calls share one rewrite of the file and one `exportfs -a`.
	ExportsFile string
	// EtcExports and EtcExportsD are read by UsedFSIDs. Defaults
	// DefaultEtcExports and DefaultEtcExportsD; tests override them.
	EtcExports  string
	EtcExportsD string
	// Etab is nfs-utils' table of live exports, read to tell whether an
	// admin's line in EtcExports{,D} is exported yet. Default DefaultEtab.
	Etab string
	// Logger receives a line per export and unexport. Default: discard.
	Logger *slog.Logger
}

// Exportfs exports through nfs-utils' exportfs(8) to the kernel NFS server.
// Its exports are command-line exports, recorded in /var/lib/nfs/etab (and in
// ExportsFile, if set).
type Exportfs struct {
	bin         string
	opts        string
	file        string
	etcExports  string
	etcExportsD string
	etab        string
	log         *slog.Logger
	// foreignWarned: the last batch found an admin's pending export and
	// said so (logged once until it is gone).
	foreignWarned atomic.Bool

	// fileBatch coalesces rewrites of the exports file (see updateFile).
	fileBatch batcher[fileEdit]
	// For tests: rewrites of the file, and a hook run before each.
	fileWrites      atomic.Int64
	exportRuns      atomic.Int64
	beforeFileWrite func()
}

// NewExportfs checks o, fills in its defaults and finds the exportfs binary.
func NewExportfs(o ExportfsOptions) (*Exportfs, error) {
	x := &Exportfs{
		opts:        o.Options,
		file:        o.ExportsFile,
		etcExports:  o.EtcExports,
		etcExportsD: o.EtcExportsD,
		etab:        o.Etab,
		log:         o.Logger,
	}
	if x.etab == "" {
		x.etab = DefaultEtab
	}
	if x.opts == "" {
		x.opts = DefaultOptions
	}
	if err := validateOptions(x.opts); err != nil {
		return nil, fmt.Errorf("nfsexport: options %q: %w", x.opts, err)
	}
	if x.etcExports == "" {
		x.etcExports = DefaultEtcExports
	}
	if x.etcExportsD == "" {
		x.etcExportsD = DefaultEtcExportsD
	}
	if x.file != "" {
		base := filepath.Base(x.file)
		switch {
		case !filepath.IsAbs(x.file) || filepath.Clean(x.file) != x.file:
			return nil, fmt.Errorf("nfsexport: exports file %q is not an absolute, clean path", x.file)
		case !strings.HasSuffix(base, ".exports") || base == ".exports" || strings.HasPrefix(base, "."):
			return nil, fmt.Errorf("nfsexport: exports file %q: name must end in .exports and not start with \".\", or exportfs -ra ignores it", x.file)
		}
	}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	bin, err := findBinary(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("nfsexport: %w", err)
	}
	x.bin = bin
	return x, nil
}

func findBinary(name string) (string, error) {
	if name == "" {
		name = "exportfs"
	}
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	if !strings.Contains(name, "/") {
		// root's PATH normally has the sbin directories; a service's or
		// a test runner's may not.
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if p, err2 := exec.LookPath(filepath.Join(dir, name)); err2 == nil {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("find %s (is nfs-kernel-server installed?): %w", name, err)
}

// validateOptions rejects what would break the command line or our exports
// file, and fsid, which is per export.
func validateOptions(opts string) error {
	for i := 0; i < len(opts); i++ {
		c := opts[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()"'#\`, c) >= 0 {
			return fmt.Errorf("character %q is not allowed", c)
		}
	}
	for _, o := range strings.Split(opts, ",") {
		switch {
		case o == "":
			return errors.New("empty option")
		case strings.HasPrefix(o, "fsid="):
			return errors.New("fsid is set per export; leave it out")
		}
	}
	return nil
}

// batched reports whether exports go through the exports file and one
// `exportfs -a` per batch instead of one `exportfs -o` each. Every exportfs
// run rewrites all of etab under a lock, O(exports), so one run per node
// makes a storm of new nodes quadratic; exportfs -a exports a whole batch
// in one run, but reads only the files in /etc/exports.d, so the exports
// file must be there.
func (x *Exportfs) batched() bool {
	return x.file != "" && filepath.Dir(x.file) == x.etcExportsD
}

// Name returns "exportfs".
func (x *Exportfs) Name() string { return "exportfs" }

func (x *Exportfs) exportOptions(e Export) string {
	return x.opts + ",fsid=" + strconv.FormatUint(uint64(e.FSID), 10)
}

// target is exportfs's CLIENT:PATH argument.
func target(e Export) string { return e.Client.String() + ":" + e.Path }

// Export runs `exportfs -o OPTIONS,fsid=N IP:PATH`, then records the export
// in ExportsFile. Exporting again replaces the export's options, so a repeat
// with the same Export is a no-op that succeeds.
//
// exportfs writes etab even when it fails (e.g. for a missing path), so
// Export first checks that the path is a directory, and after any failure
// removes the export again (best effort, even if ctx is done): nothing
// half-made is left behind. That also removes an identical export that
// existed before the failed call.
//
// fsid 0 is rejected: it makes the export the NFSv4 pseudo-root.
func (x *Exportfs) Export(ctx context.Context, e Export) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("export %s: %w", e, err)
	}
	if e.FSID == 0 {
		return fmt.Errorf("export %s: %w: fsid 0 means the NFSv4 pseudo-root, not a node's root", e, ErrInvalidExport)
	}
	fi, err := os.Lstat(e.Path)
	if err != nil {
		return fmt.Errorf("export %s: %w", e, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("export %s: %s (file type %v): %w", e, e.Path, fi.Mode().Type(), syscall.ENOTDIR)
	}
	opts := x.exportOptions(e)
	if x.batched() {
		if err := x.fileBatch.do(fileEdit{e: e, opts: opts, add: true, export: true}, x.runBatch); err != nil {
			return fmt.Errorf("export %s: %w", e, err)
		}
		x.log.Info("exported", "path", e.Path, "client", e.Client, "fsid", e.FSID, "options", opts)
		return nil
	}
	if _, err := x.run(ctx, "-o", opts, target(e)); err != nil {
		x.undo(ctx, e)
		return fmt.Errorf("export %s: %w", e, err)
	}
	if err := x.updateFile(e, opts, true); err != nil {
		x.undo(ctx, e)
		return fmt.Errorf("export %s: record in %s: %w", e, x.file, err)
	}
	x.log.Info("exported", "path", e.Path, "client", e.Client, "fsid", e.FSID, "options", opts)
	return nil
}

// undo removes what a failed Export may have left, logging what it cannot.
func (x *Exportfs) undo(ctx context.Context, e Export) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, err := x.unexportfs(ctx, e); err != nil {
		x.log.Warn("cannot remove failed export", "export", e.String(), "err", err)
	}
	if err := x.updateFile(e, "", false); err != nil {
		x.log.Warn("cannot remove failed export from exports file", "export", e.String(), "file", x.file, "err", err)
	}
}

// Unexport runs `exportfs -u IP:PATH` and removes the export from
// ExportsFile. e.FSID is ignored. An export that does not exist is success.
// The path need not exist any more.
func (x *Exportfs) Unexport(ctx context.Context, e Export) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("unexport %s: %w", e, err)
	}
	// In batched mode the file goes first: a batch's `exportfs -a` run
	// after our -u would otherwise export the node again from its line.
	if x.batched() {
		if err := x.updateFile(e, "", false); err != nil {
			return fmt.Errorf("unexport %s: remove from %s: %w", e, x.file, err)
		}
	}
	removed, err := x.unexportfs(ctx, e)
	if err != nil {
		return fmt.Errorf("unexport %s: %w", e, err)
	}
	if err := x.updateFile(e, "", false); err != nil {
		return fmt.Errorf("unexport %s: remove from %s: %w", e, x.file, err)
	}
	if removed {
		x.log.Info("unexported", "path", e.Path, "client", e.Client)
	}
	return nil
}

// unexportfs runs exportfs -u and reports whether there was an export.
func (x *Exportfs) unexportfs(ctx context.Context, e Export) (removed bool, err error) {
	_, err = x.run(ctx, "-u", target(e))
	var ee *ExecError
	if errors.As(err, &ee) && ee.exitCode() == 1 && strings.Contains(ee.Stderr, "Could not find") {
		return false, nil
	}
	return err == nil, err
}

// Exported reports whether `exportfs -v` lists e.Path for e.Client with fsid
// e.FSID. The other options are not compared.
func (x *Exportfs) Exported(ctx context.Context, e Export) (bool, error) {
	if err := e.Validate(); err != nil {
		return false, fmt.Errorf("check export %s: %w", e, err)
	}
	entries, err := x.listed(ctx)
	if err != nil {
		return false, fmt.Errorf("check export %s: %w", e, err)
	}
	client := e.Client.String()
	for _, en := range entries {
		if en.Path != e.Path || en.Client != client {
			continue
		}
		if fsid, ok := en.fsid(); ok && fsid == e.FSID {
			return true, nil
		}
	}
	return false, nil
}

// List returns the exports `exportfs -v` lists that an Export can describe
// (single IPv4 client, numeric fsid), whoever made them, sorted by path and
// client.
func (x *Exportfs) List(ctx context.Context) ([]Export, error) {
	entries, err := x.listed(ctx)
	if err != nil {
		return nil, fmt.Errorf("list exports: %w", err)
	}
	var out []Export
	for _, en := range entries {
		if e, ok := en.toExport(); ok {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Export) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return a.Client.Compare(b.Client)
	})
	return out, nil
}

// UsedFSIDs returns the numeric fsids (fsid=root counts as 0) of every export
// `exportfs -v` lists and every export declared in EtcExports and the
// *.exports files of EtcExportsD (those `exportfs -ra` would add), each
// mapped to one path that uses it: exportfs's own list first, then the files
// in the order exportfs reads them.
func (x *Exportfs) UsedFSIDs(ctx context.Context) (map[uint32]string, error) {
	used := make(map[uint32]string)
	add := func(entries []entry) {
		for _, en := range entries {
			if fsid, ok := en.fsid(); ok {
				if _, seen := used[fsid]; !seen {
					used[fsid] = en.Path
				}
			}
		}
	}
	live, err := x.listed(ctx)
	if err != nil {
		return nil, fmt.Errorf("used fsids: %w", err)
	}
	add(live)
	files, err := x.exportsFiles()
	if err != nil {
		return nil, fmt.Errorf("used fsids: %w", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since listed, or no /etc/exports
		}
		if err != nil {
			return nil, fmt.Errorf("used fsids: %w", err)
		}
		add(parseExportsFile(string(data)))
	}
	return used, nil
}

// exportsFiles lists the files exportfs -r reads: /etc/exports, then the
// files in /etc/exports.d whose names end in ".exports" and do not start
// with ".", in name order.
func (x *Exportfs) exportsFiles() ([]string, error) {
	files := []string{x.etcExports}
	des, err := os.ReadDir(x.etcExportsD)
	if errors.Is(err, fs.ErrNotExist) {
		return files, nil
	}
	if err != nil {
		return nil, err
	}
	for _, de := range des {
		name := de.Name()
		if de.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".exports") {
			continue
		}
		files = append(files, filepath.Join(x.etcExportsD, name))
	}
	return files, nil
}

// listed runs `exportfs -v` and parses its output.
func (x *Exportfs) listed(ctx context.Context) ([]entry, error) {
	out, err := x.run(ctx, "-v")
	if err != nil {
		return nil, err
	}
	entries, err := parseExportfsVerbose(out)
	if err != nil {
		return nil, fmt.Errorf("%s -v: %w", x.bin, err)
	}
	return entries, nil
}

// run runs exportfs with args and returns its standard output. The C locale
// keeps its messages ("Could not find …") in the English we match.
func (x *Exportfs) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, x.bin, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		return "", &ExecError{
			Cmd:    append([]string{x.bin}, args...),
			Stderr: strings.TrimSpace(stderr.String()),
			Err:    err,
		}
	}
	if msg := strings.TrimSpace(stderr.String()); msg != "" {
		x.log.Debug("exportfs warned", "cmd", commandLine(append([]string{x.bin}, args...)), "stderr", msg)
	}
	return stdout.String(), nil
}

// ExecError is a command that failed: its command line, what it wrote to
// standard error, and how it failed (an *exec.ExitError, or a start or
// context error).
type ExecError struct {
	Cmd    []string
	Stderr string
	Err    error
}

// Error formats the command line, the failure and the stderr text:
// "exportfs -u 10.0.0.1:/x: exit status 1: exportfs: …".
func (e *ExecError) Error() string {
	s := commandLine(e.Cmd) + ": " + e.Err.Error()
	if e.Stderr != "" {
		s += ": " + e.Stderr
	}
	return s
}

// Unwrap returns Err.
func (e *ExecError) Unwrap() error { return e.Err }

// exitCode is the command's exit status, or -1 if it did not exit normally.
func (e *ExecError) exitCode() int {
	var ee *exec.ExitError
	if errors.As(e.Err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// commandLine quotes only the arguments a reader could misread.
func commandLine(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`;&|<>*?") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
