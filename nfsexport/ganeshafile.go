package nfsexport

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// ganeshaBlock is one node export in the managed file: what an Export holds,
// Export_Id being the fsid.
type ganeshaBlock struct {
	ID     uint16
	Path   string
	Client netip.Addr
}

func (b ganeshaBlock) export() Export {
	return Export{Path: b.Path, Client: b.Client, FSID: uint32(b.ID)}
}

// blockOf is e's block; e.FSID must fit in 16 bits (validateGaneshaExport).
func blockOf(e Export) ganeshaBlock {
	return ganeshaBlock{ID: uint16(e.FSID), Path: e.Path, Client: e.Client}
}

const ganeshaFileHeader = `# Written by pxebootfs: one EXPORT block per node root, each visible to that
# node's IP alone. Ganesha reads it at start through a line in its main
# configuration (ganesha.conf):
#   %%include "%s"
# and pxebootfs adds and removes exports at run time over D-Bus.
# Rewritten on every change; do not edit.
`

// renderGaneshaFile writes the managed file: the header, then one EXPORT
// block per node, sorted by Export_Id so that the file does not churn.
//
// Access is granted in the CLIENT block only. Ganesha applies the EXPORT
// block's own permissions to every client no CLIENT block matches, so
// Access_Type = None there is what restricts the export to the node (an
// EXPORT_DEFAULTS block of the admin's cannot widen it either).
// Filesystem_id N.0 is what the kernel server reports for fsid=N; a
// node keeps it, and its Export_Id, for life, so its file handles survive
// restarts of Ganesha and pxebootfs.
func renderGaneshaFile(file string, blocks []ganeshaBlock) []byte {
	slices.SortFunc(blocks, func(a, b ganeshaBlock) int { return int(a.ID) - int(b.ID) })
	var b bytes.Buffer
	fmt.Fprintf(&b, ganeshaFileHeader, file)
	for _, blk := range blocks {
		fmt.Fprintf(&b, `
EXPORT {
	Export_Id = %[1]d;
	Path = "%[2]s";
	Pseudo = "%[2]s";
	Filesystem_Id = %[1]d.0;
	Protocols = 3, 4;
	Access_Type = None;
	Squash = No_Root_Squash;
	FSAL {
		Name = VFS;
	}
	CLIENT {
		Clients = %[3]s;
		Access_Type = RW;
		Squash = No_Root_Squash;
	}
}
`, blk.ID, blk.Path, blk.Client)
	}
	return b.Bytes()
}

// errNotOurFile is wrapped by parse errors of the managed file.
var errNotOurFile = errors.New("not in the form pxebootfs writes")

// parseGaneshaFile reads back a managed file. It reads only what
// renderGaneshaFile writes: comments, blank lines and EXPORT blocks, each
// with one Export_Id, one Path and one CLIENT block naming one IPv4
// address. Other settings inside a block are skipped (a later version may
// write more); anything else is an error rather than a block silently
// dropped at the next rewrite. Keys are case-insensitive, as in Ganesha.
func parseGaneshaFile(data []byte) ([]ganeshaBlock, error) {
	var (
		blocks  []ganeshaBlock
		cur     *ganeshaBlock
		start   int
		stack   []string // open blocks, outermost first
		clients int
		hasID   bool
	)
	fail := func(n int, format string, args ...any) error {
		return fmt.Errorf("line %d: %s: %w", n, fmt.Sprintf(format, args...), errNotOurFile)
	}
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if name, ok := strings.CutSuffix(line, "{"); ok {
			name = strings.ToUpper(strings.TrimSpace(name))
			switch {
			case len(stack) == 0 && name == "EXPORT":
				cur, start, clients, hasID = &ganeshaBlock{}, n, 0, false
			case len(stack) == 0:
				return nil, fail(n, "block %q outside an EXPORT block", name)
			case len(stack) == 1 && name == "CLIENT":
				clients++
			}
			stack = append(stack, name)
			continue
		}
		if line == "}" {
			if len(stack) == 0 {
				return nil, fail(n, "unbalanced }")
			}
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				continue
			}
			switch {
			case !hasID:
				return nil, fail(start, "EXPORT block without Export_Id")
			case cur.Path == "":
				return nil, fail(start, "EXPORT block without Path")
			case clients != 1 || !cur.Client.IsValid():
				return nil, fail(start, "EXPORT block must have one CLIENT block with one address")
			}
			blocks = append(blocks, *cur)
			cur = nil
			continue
		}
		if len(stack) == 0 {
			return nil, fail(n, "%q outside an EXPORT block", line)
		}
		key, val, ok := strings.Cut(strings.TrimSuffix(line, ";"), "=")
		if !ok {
			return nil, fail(n, "%q is not KEY = VALUE;", line)
		}
		key, val = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(val)
		switch {
		case len(stack) == 1 && key == "export_id":
			id, err := strconv.ParseUint(val, 10, 16)
			if err != nil || hasID {
				return nil, fail(n, "bad or repeated Export_Id %q", val)
			}
			cur.ID, hasID = uint16(id), true
		case len(stack) == 1 && key == "path":
			p := strings.Trim(val, `"`)
			if err := ValidatePath(p); err != nil || cur.Path != "" {
				return nil, fail(n, "bad or repeated Path %q", val)
			}
			cur.Path = p
		case len(stack) == 2 && stack[1] == "CLIENT" && key == "clients":
			a, err := netip.ParseAddr(val)
			if err != nil || ValidateClient(a) != nil || cur.Client.IsValid() {
				return nil, fail(n, "Clients %q is not one IPv4 address", val)
			}
			cur.Client = a
		}
	}
	if len(stack) != 0 {
		return nil, fail(start, "EXPORT block is not closed")
	}
	return blocks, nil
}

// readFile returns the blocks of the managed file and its bytes; a missing
// file has none. g.fileMu must be held. The file is read every time (an
// admin may have replaced it), but parsed only when its bytes differ from
// the last parse: with thousands of nodes, parsing it for every batch of
// new nodes was most of what a batch cost pxebootfs.
func (g *Ganesha) readFile() ([]ganeshaBlock, []byte, error) {
	data, err := os.ReadFile(g.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if g.parsed.data != nil && bytes.Equal(data, g.parsed.data) {
		return slices.Clone(g.parsed.blocks), data, nil
	}
	blocks, err := parseGaneshaFile(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", g.file, err)
	}
	g.parsed.data, g.parsed.blocks = data, slices.Clone(blocks)
	return blocks, data, nil
}

// blockEdit changes the managed file's blocks, or returns an error to
// leave them alone.
type blockEdit func([]ganeshaBlock) ([]ganeshaBlock, error)

// editFile applies edit to the managed file's blocks and returns once the
// file on disk has the result (written atomically, if it changed).
// Concurrent edits share one rewrite (see batcher); an edit that fails is
// left out, and only its caller sees its error.
func (g *Ganesha) editFile(edit blockEdit) error {
	return g.fileBatch.do(edit, g.applyEdits)
}

// applyEdits applies a batch of edits in order with one read and one
// write of the file.
func (g *Ganesha) applyEdits(batch []blockEdit) []error {
	errs := make([]error, len(batch))
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	g.fileMu.Lock()
	defer g.fileMu.Unlock()
	blocks, old, err := g.readFile()
	if err != nil {
		return fail(err)
	}
	for i, edit := range batch {
		next, err := edit(slices.Clone(blocks))
		if err != nil {
			errs[i] = err
			continue
		}
		blocks = next
	}
	data := renderGaneshaFile(g.file, blocks)
	if old != nil && bytes.Equal(data, old) {
		return errs
	}
	if err := writeFileAtomic(g.file, data, 0o644); err != nil {
		return fail(err)
	}
	g.parsed.data, g.parsed.blocks = data, blocks
	return errs
}

// fileBlocks reads the managed file's blocks under the file lock.
func (g *Ganesha) fileBlocks() ([]ganeshaBlock, error) {
	g.fileMu.Lock()
	defer g.fileMu.Unlock()
	blocks, _, err := g.readFile()
	return blocks, err
}
