package nfsexport

import (
	"bytes"
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
	return x.fileBatch.do(fileEdit{e: e, opts: opts, add: add}, func(batch []fileEdit) []error {
		err := x.applyEdits(batch)
		errs := make([]error, len(batch))
		for i := range errs {
			errs[i] = err
		}
		return errs
	})
}

// fileEdit is one queued updateFile.
type fileEdit struct {
	e    Export
	opts string
	add  bool
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
