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
// the exports file, replacing any earlier line for that pair. It is a no-op
// without an exports file, or when nothing changes.
func (x *Exportfs) updateFile(e Export, opts string, add bool) error {
	if x.file == "" {
		return nil
	}
	x.fileMu.Lock()
	defer x.fileMu.Unlock()

	old, err := os.ReadFile(x.file)
	if errors.Is(err, fs.ErrNotExist) {
		if !add {
			return nil
		}
	} else if err != nil {
		return err
	}
	client := e.Client.String()
	var keep []entry
	for _, en := range parseExportsFile(string(old)) {
		if en.Path == e.Path && en.Client == client {
			continue
		}
		keep = append(keep, en)
	}
	if add {
		keep = append(keep, entry{Path: e.Path, Client: client, Options: splitOptions(opts)})
	}
	data := renderExportsFile(keep)
	if bytes.Equal(data, old) {
		return nil
	}
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
