package nfsexport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pxebootfs/pxebootfs/internal/atomicfile"
)

const exportsFileHeader = `# Written by pxebootfs: one line per node export, so that "exportfs -ra"
# (an NFS server restart) keeps them. Rewritten on every change; do not edit.
`

// updateFile records (add) or forgets the export of e.Path to e.Client in
// the exports file, replacing any earlier line for that pair, and returns
// once the file on disk has the change. It is a no-op without an exports
// file, or when nothing changes.
//
// Concurrent updates share writes (group commit): while one rewrite is in
// flight, the updates that arrive queue up, and the next rewrite applies
// them all at once. A boot storm of new nodes thus rewrites the file (which
// holds every export, O(exports) bytes) a few times, not once per node.
func (x *Exportfs) updateFile(e Export, opts string, add bool) error {
	if x.file == "" {
		return nil
	}
	return x.fileBatch.do(fileEdit{e: e, opts: opts, add: add}, x.runBatch)
}

// fileEdit is one queued edit of the exports file.
type fileEdit struct {
	e    Export
	opts string
	add  bool
	// export: in batched mode, the edit is an Export, done by the
	// batch's `exportfs -a` once the file has its line.
	export bool
}

// runBatch applies one batch of edits: one rewrite of the file, then, if
// any edit is an export, one `exportfs -a` for all of them. It returns
// one error per edit.
func (x *Exportfs) runBatch(batch []fileEdit) []error {
	errs := make([]error, len(batch))
	if err := x.applyEdits(batch); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	var exports []int
	for i, ed := range batch {
		if ed.export {
			exports = append(exports, i)
		}
	}
	if len(exports) == 0 {
		return errs
	}
	x.exportRuns.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var failed []int
	if pending := x.foreignPending(); len(pending) > 0 {
		// exportfs -a would export the admin's pending lines too, and
		// pxebootfs changes only its own exports: this batch goes one
		// exportfs -o per node, which costs more while it lasts.
		if !x.foreignWarned.Swap(true) {
			x.log.Warn("an exports file of the admin's has exports that are not exported yet; exporting node roots one by one until they are, so as not to apply them", "pending", pending)
		}
		failed = x.exportEach(ctx, batch, exports, errs)
	} else {
		x.foreignWarned.Store(false)
		failed = x.exportAll(ctx, batch, exports, errs)
	}
	if len(failed) == 0 {
		return errs
	}
	// Take back what failed: its line, and what exportfs may have put
	// in etab anyway (it writes etab even for a path it cannot stat).
	undo := make([]fileEdit, len(failed))
	for k, i := range failed {
		undo[k] = fileEdit{e: batch[i].e}
	}
	if err := x.applyEdits(undo); err != nil {
		x.log.Warn("cannot remove failed exports from exports file", "file", x.file, "err", err)
	}
	for _, ed := range undo {
		if _, err := x.unexportfs(ctx, ed.e); err != nil {
			x.log.Warn("cannot remove failed export", "export", ed.e.String(), "err", err)
		}
	}
	return errs
}

// foreignPending lists the exports that an exports file other than ours
// declares and etab does not have (PATH CLIENT): what `exportfs -a` would
// export besides ours. An unreadable file counts as pending, so that doubt
// costs speed, not the admin's exports.
func (x *Exportfs) foreignPending() []string {
	files, err := x.exportsFiles()
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", x.etcExportsD, err)}
	}
	live := map[[2]string]bool{}
	if data, err := os.ReadFile(x.etab); err == nil {
		for _, en := range parseExportsFile(string(data)) {
			live[[2]string{en.Path, en.Client}] = true
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return []string{fmt.Sprintf("%s: %v", x.etab, err)}
	}
	var pending []string
	for _, f := range files {
		if f == x.file {
			continue
		}
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			pending = append(pending, fmt.Sprintf("%s: %v", f, err))
			continue
		}
		for _, en := range parseExportsFile(string(data)) {
			if !live[[2]string{en.Path, en.Client}] {
				pending = append(pending, en.Path+" "+en.Client+" ("+f+")")
			}
		}
	}
	return pending
}

// exportEach exports each of batch's exports with its own `exportfs -o`,
// which exports that one target and nothing else, and sets errs[i] for
// each that fails; it returns the indices that failed.
func (x *Exportfs) exportEach(ctx context.Context, batch []fileEdit, exports []int, errs []error) (failed []int) {
	for _, i := range exports {
		if _, err := x.run(ctx, "-o", batch[i].opts, target(batch[i].e)); err != nil {
			errs[i] = err
			failed = append(failed, i)
		}
	}
	return failed
}

// exportAll runs `exportfs -a`, which exports every line of /etc/exports
// and /etc/exports.d (ours included) in one rewrite of etab, and sets
// errs[i] for each exports[i] that did not come out right. It returns the
// indices that failed.
//
// exportfs -a goes on past a line it cannot export and exits 1, naming
// the path on standard error; etab then lists that export all the same.
// So when it fails, a node's export fails when a stderr line names its
// path, or when the listing afterwards lacks it; a failure that names none
// of ours (a bad line of the admin's in /etc/exports) is logged, not
// charged to us.
func (x *Exportfs) exportAll(ctx context.Context, batch []fileEdit, exports []int, errs []error) (failed []int) {
	_, runErr := x.run(ctx, "-a")
	if runErr == nil {
		// exit 0: every line exported. No listing to check it: exportfs
		// -v costs O(exports) too.
		return nil
	}
	var ee *ExecError
	errors.As(runErr, &ee)
	live, listErr := x.listed(ctx)
	have := make(map[Export]bool, len(live))
	for _, en := range live {
		if e, ok := en.toExport(); ok {
			have[e] = true
		}
	}
	charged := false
	for _, i := range exports {
		e := batch[i].e
		var lines []string
		if ee != nil {
			lines = linesNaming(ee.Stderr, e.Path)
		}
		switch {
		case len(lines) > 0:
			one := *ee
			one.Stderr = strings.Join(lines, "\n")
			errs[i] = &one
			charged = true
		case runErr != nil && ee == nil:
			errs[i] = runErr // not run at all, or timed out
		case listErr != nil:
			errs[i] = listErr
		case !have[e]:
			errs[i] = fmt.Errorf("%s -a did not export it", x.bin)
			if runErr != nil {
				errs[i] = fmt.Errorf("%s -a did not export it: %w", x.bin, runErr)
			}
		default:
			continue
		}
		failed = append(failed, i)
	}
	if runErr != nil && !charged && len(failed) == 0 {
		x.log.Warn("exportfs -a failed for exports that are not ours; ours are in place", "err", runErr)
	}
	return failed
}

// linesNaming returns the lines of text that name path as a whole path
// (not as the prefix of a longer one).
func linesNaming(text, path string) []string {
	var out []string
	for line := range strings.Lines(text) {
		for rest := line; ; {
			i := strings.Index(rest, path)
			if i < 0 {
				break
			}
			rest = rest[i+len(path):]
			if rest == "" || !isPathByte(rest[0]) {
				out = append(out, strings.TrimRight(line, "\n"))
				break
			}
		}
	}
	return out
}

func isPathByte(c byte) bool {
	return c == '/' || c == '.' || c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// applyEdits rewrites the exports file once with every edit of batch, in
// order.
func (x *Exportfs) applyEdits(batch []fileEdit) error {
	if x.beforeFileWrite != nil {
		x.beforeFileWrite()
	}
	old, err := os.ReadFile(x.file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	entries := parseExportsFile(string(old))
	for _, ed := range batch {
		client := ed.e.Client.String()
		entries = slices.DeleteFunc(entries, func(en entry) bool { return en.Path == ed.e.Path && en.Client == client })
		if ed.add {
			entries = append(entries, entry{Path: ed.e.Path, Client: client, Options: splitOptions(ed.opts)})
		}
	}
	data := renderExportsFile(entries)
	if bytes.Equal(data, old) || (old == nil && len(entries) == 0) {
		return nil
	}
	x.fileWrites.Add(1)
	return writeFileAtomic(x.file, data, 0o644)
}

// renderExportsFile writes entries as exports(5) lines "PATH CLIENT(OPTS)",
// sorted so that the file does not churn.
func renderExportsFile(entries []entry) []byte {
	slices.SortFunc(entries, func(a, b entry) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Client, b.Client)
	})
	var b bytes.Buffer
	b.WriteString(exportsFileHeader)
	for _, en := range entries {
		fmt.Fprintf(&b, "%s %s(%s)\n", escapeOctal(en.Path), en.Client, strings.Join(en.Options, ","))
	}
	return b.Bytes()
}

// escapeOctal writes bytes that would split or end an exports(5) line as
// \ooo. Our own paths never have them (ValidatePath), but a hand-edited
// line must not corrupt the file when it is rewritten.
func escapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '#' || c == '"' || c == '\\' || c == 0x7f {
			fmt.Fprintf(&b, `\%03o`, c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// writeFileAtomic replaces name with data so that readers (exportfs -r, a
// crash) see the old file or the new one, never a mix; it creates the
// directory (/etc/exports.d may not exist yet).
func writeFileAtomic(name string, data []byte, perm fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(name, data, perm)
}
