package nfsexport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// The behaviour every Exporter shares, as one table run against each real
// backend: Exportfs on the real exportfs (private etab, see TestMain) and
// Ganesha on a real ganesha.nfsd (see testenv.StartGanesha).

// backend is an Exporter under test and how to look past it at the server.
type backend struct {
	x Exporter
	// restriction returns what the server holds for e's export: its
	// clients (bare addresses), and whether it grants them write access
	// without squashing root. ok is false when the server has no export
	// of e.Path.
	restriction func(t *testing.T, e Export) (clients []string, rwNoRootSquash, ok bool)
	fsid        atomic.Uint32
}

// newExport makes a directory to export to client with a fresh fsid, and
// unexports it at the end of the test.
func (b *backend) newExport(t *testing.T, client string) Export {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := Export{Path: dir, Client: netip.MustParseAddr(client), FSID: b.fsid.Add(1)}
	t.Cleanup(func() {
		if err := b.x.Unexport(context.Background(), e); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return e
}

func (b *backend) export(t *testing.T, e Export) {
	t.Helper()
	if err := b.x.Export(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

func (b *backend) unexport(t *testing.T, e Export) {
	t.Helper()
	if err := b.x.Unexport(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

func (b *backend) wantExported(t *testing.T, e Export, want bool) {
	t.Helper()
	got, err := b.x.Exported(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Exported(%v) = %v, want %v", e, got, want)
	}
}

// listed returns List's entries for path.
func (b *backend) listed(t *testing.T, path string) []Export {
	t.Helper()
	all, err := b.x.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var mine []Export
	for _, e := range all {
		if e.Path == path {
			mine = append(mine, e)
		}
	}
	return mine
}

func (b *backend) wantListed(t *testing.T, e Export) {
	t.Helper()
	if got := b.listed(t, e.Path); len(got) != 1 || got[0] != e {
		t.Errorf("List has %v for %s, want exactly %v", got, e.Path, e)
	}
}

var behaviourCases = []struct {
	name string
	run  func(t *testing.T, b *backend)
}{
	{"export", func(t *testing.T, b *backend) {
		e := b.newExport(t, "127.0.0.2")
		b.export(t, e)
		b.wantExported(t, e, true)
		b.wantListed(t, e)
	}},
	{"idempotent export", func(t *testing.T, b *backend) {
		e := b.newExport(t, "127.0.0.2")
		b.export(t, e)
		b.export(t, e)
		b.wantExported(t, e, true)
		b.wantListed(t, e)
	}},
	{"exported", func(t *testing.T, b *backend) {
		e := b.newExport(t, "127.0.0.2")
		b.wantExported(t, e, false)
		b.export(t, e)
		b.wantExported(t, e, true)
		b.wantExported(t, Export{Path: e.Path, Client: e.Client, FSID: e.FSID + 1000}, false)
		b.wantExported(t, Export{Path: e.Path, Client: netip.MustParseAddr("127.0.0.3"), FSID: e.FSID}, false)
		b.wantExported(t, Export{Path: e.Path + "-other", Client: e.Client, FSID: e.FSID}, false)
	}},
	{"unexport", func(t *testing.T, b *backend) {
		e1, e2 := b.newExport(t, "127.0.0.2"), b.newExport(t, "127.0.0.3")
		b.export(t, e1)
		b.export(t, e2)
		b.unexport(t, e1)
		b.wantExported(t, e1, false)
		if got := b.listed(t, e1.Path); len(got) != 0 {
			t.Errorf("List still has %v", got)
		}
		if _, _, ok := b.restriction(t, e1); ok {
			t.Errorf("the server still exports %s", e1.Path)
		}
		b.wantExported(t, e2, true)
	}},
	{"unexport ignores the fsid", func(t *testing.T, b *backend) {
		e := b.newExport(t, "127.0.0.2")
		b.export(t, e)
		b.unexport(t, Export{Path: e.Path, Client: e.Client, FSID: e.FSID + 1000})
		b.wantExported(t, e, false)
	}},
	{"unexport of another client leaves the export", func(t *testing.T, b *backend) {
		e := b.newExport(t, "127.0.0.2")
		b.export(t, e)
		b.unexport(t, Export{Path: e.Path, Client: netip.MustParseAddr("127.0.0.3"), FSID: e.FSID})
		b.wantExported(t, e, true)
	}},
	{"idempotent unexport", func(t *testing.T, b *backend) {
		e := b.newExport(t, "127.0.0.2")
		b.unexport(t, e) // never exported
		b.export(t, e)
		b.unexport(t, e)
		b.unexport(t, e)
		b.wantExported(t, e, false)
		// The path need not exist any more.
		b.unexport(t, Export{Path: e.Path + "-gone", Client: e.Client, FSID: e.FSID})
	}},
	{"re-export with another fsid replaces", func(t *testing.T, b *backend) {
		e := b.newExport(t, "127.0.0.2")
		b.export(t, e)
		e2 := e
		e2.FSID = b.fsid.Add(1)
		b.export(t, e2)
		b.wantExported(t, e2, true)
		b.wantExported(t, e, false)
		b.wantListed(t, e2)
	}},
	{"list", func(t *testing.T, b *backend) {
		want := []Export{b.newExport(t, "127.0.0.2"), b.newExport(t, "127.0.0.3"), b.newExport(t, "127.0.0.4")}
		for _, e := range want {
			b.export(t, e)
		}
		all, err := b.x.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var got []Export
		for _, e := range all {
			if slices.ContainsFunc(want, func(w Export) bool { return w.Path == e.Path }) {
				got = append(got, e)
			}
		}
		slices.SortFunc(want, func(a, b Export) int { return strings.Compare(a.Path, b.Path) })
		if !slices.Equal(got, want) {
			t.Errorf("List = %v, want %v (sorted by path)", got, want)
		}
	}},
	{"client restriction", func(t *testing.T, b *backend) {
		e := b.newExport(t, "127.0.0.2")
		b.export(t, e)
		clients, rw, ok := b.restriction(t, e)
		if !ok {
			t.Fatalf("the server has no export of %s", e.Path)
		}
		if len(clients) != 1 || clients[0] != "127.0.0.2" {
			t.Errorf("the server exports %s to %q, want 127.0.0.2 alone", e.Path, clients)
		}
		if !rw {
			t.Errorf("the export of %s is not read-write without root squashing", e.Path)
		}
	}},
	{"used fsids", func(t *testing.T, b *backend) {
		e := b.newExport(t, "127.0.0.2")
		b.export(t, e)
		used, err := b.x.UsedFSIDs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if used[e.FSID] != e.Path {
			t.Errorf("UsedFSIDs[%d] = %q, want %q", e.FSID, used[e.FSID], e.Path)
		}
	}},
	{"rejects what can never be exported", func(t *testing.T, b *backend) {
		dir := t.TempDir()
		file := filepath.Join(dir, "file")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		ip := netip.MustParseAddr("127.0.0.2")
		for _, tt := range []struct {
			e    Export
			want error
		}{
			{Export{Path: dir, Client: ip, FSID: 0}, ErrInvalidExport},
			{Export{Path: dir + "/a b", Client: ip, FSID: 1}, ErrInvalidExport},
			{Export{Path: dir, Client: netip.IPv4Unspecified(), FSID: 1}, ErrInvalidExport},
			{Export{Path: dir, Client: netip.IPv6Loopback(), FSID: 1}, ErrInvalidExport},
			{Export{Path: filepath.Join(dir, "missing"), Client: ip, FSID: 1}, fs.ErrNotExist},
			{Export{Path: file, Client: ip, FSID: 1}, syscall.ENOTDIR},
		} {
			if err := b.x.Export(context.Background(), tt.e); !errors.Is(err, tt.want) {
				t.Errorf("Export(%v) = %v, want %v", tt.e, err, tt.want)
			}
			if tt.e.Path != "" && strings.HasPrefix(tt.e.Path, dir) {
				if got := b.listed(t, tt.e.Path); len(got) != 0 {
					t.Errorf("failed Export left %v", got)
				}
			}
		}
	}},
}

func TestBehaviour(t *testing.T) {
	backends := []struct {
		name  string
		setup func(t *testing.T) *backend
	}{
		{"exportfs", exportfsBackend},
		{"ganesha", ganeshaBackend},
	}
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) {
			b := bk.setup(t)
			for _, c := range behaviourCases {
				t.Run(c.name, func(t *testing.T) { c.run(t, b) })
			}
		})
	}
}

func exportfsBackend(t *testing.T) *backend {
	x := newReal(t, ExportfsOptions{})
	b := &backend{x: x}
	b.fsid.Store(20000)
	b.restriction = func(t *testing.T, e Export) ([]string, bool, bool) {
		entries := exportfsV(t, x, e.Path)
		var clients []string
		rw := true
		for _, en := range entries {
			clients = append(clients, en.Client)
			rw = rw && slices.Contains(en.Options, "rw") && slices.Contains(en.Options, "no_root_squash")
		}
		return clients, rw, len(entries) > 0
	}
	return b
}

func ganeshaBackend(t *testing.T) *backend {
	srv := testenv.StartGanesha(t)
	g, err := NewGanesha(GaneshaOptions{ConfigFile: srv.Include, Bus: srv.Bus})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	b := &backend{x: g}
	b.fsid.Store(2000)
	b.restriction = func(t *testing.T, e Export) ([]string, bool, bool) {
		ids, err := g.show(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for id, path := range ids {
			if path != e.Path {
				continue
			}
			live, found, err := g.display(context.Background(), id)
			if err != nil || !found {
				t.Fatalf("DisplayExport(%d) = %v, %v", id, found, err)
			}
			var clients []string
			for _, c := range live.Clients {
				clients = append(clients, strings.TrimSuffix(c, "/32"))
			}
			return clients, ganeshaBlockGrantsRW(t, g, id), true
		}
		return nil, false, false
	}
	return b
}

// ganeshaBlockGrantsRW reports whether the managed file's block for id
// grants nothing at the export level and read-write, root unsquashed, in its
// CLIENT block: what Ganesha loaded it from.
func ganeshaBlockGrantsRW(t *testing.T, g *Ganesha, id uint16) bool {
	t.Helper()
	data, err := os.ReadFile(g.file)
	if err != nil {
		t.Fatal(err)
	}
	head := fmt.Sprintf("EXPORT {\n\tExport_Id = %d;\n", id)
	i := strings.Index(string(data), head)
	if i < 0 {
		return false
	}
	block, _, _ := strings.Cut(string(data[i:]), "\n}\n")
	export, client, ok := strings.Cut(block, "CLIENT {")
	return ok && strings.Contains(export, "Access_Type = None;") &&
		strings.Contains(client, "Access_Type = RW;") && strings.Contains(client, "Squash = No_Root_Squash;")
}
