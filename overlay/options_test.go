package overlay

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

func TestOverlayOptions(t *testing.T) {
	tests := []struct {
		name               string
		lower, upper, work string
		extra              []string
		want               string
		wantErr            string
	}{
		{
			name:  "plain",
			lower: "/srv/root", upper: "/srv/ov/C0A80102/upper", work: "/srv/ov/C0A80102/work",
			want: "lowerdir=/srv/root,upperdir=/srv/ov/C0A80102/upper,workdir=/srv/ov/C0A80102/work,index=on,nfs_export=on",
		},
		{
			name:  "extra",
			lower: "/l", upper: "/u", work: "/w", extra: []string{"redirect_dir=nofollow", "xino=on"},
			want: "lowerdir=/l,upperdir=/u,workdir=/w,index=on,nfs_export=on,redirect_dir=nofollow,xino=on",
		},
		{name: "comma in lower", lower: "/a,b", upper: "/u", work: "/w", wantErr: `contains ','`},
		{name: "colon in lower", lower: "/a:b", upper: "/u", work: "/w", wantErr: `contains ':'`},
		{name: "backslash in upper", lower: "/l", upper: `/u\x`, work: "/w", wantErr: `contains '\\'`},
		{name: "equals in work", lower: "/l", upper: "/u", work: "/w=1", wantErr: `contains '='`},
		{name: "space", lower: "/l", upper: "/u x", work: "/w", wantErr: "whitespace"},
		{name: "tab", lower: "/l", upper: "/u", work: "/w\tx", wantErr: "whitespace"},
		{name: "newline", lower: "/l\n", upper: "/u", work: "/w", wantErr: "whitespace"},
		{name: "relative", lower: "l", upper: "/u", work: "/w", wantErr: "not an absolute path"},
		{name: "unclean", lower: "/l/../x", upper: "/u", work: "/w", wantErr: "not a clean path"},
		{name: "empty", lower: "", upper: "/u", work: "/w", wantErr: "lower dir is empty"},
		{name: "extra with comma", lower: "/l", upper: "/u", work: "/w", extra: []string{"a,b"}, wantErr: "contains ','"},
		{name: "extra empty", lower: "/l", upper: "/u", work: "/w", extra: []string{""}, wantErr: "is empty"},
		{name: "extra overrides index", lower: "/l", upper: "/u", work: "/w", extra: []string{"index=off"}, wantErr: "overrides index"},
		{name: "extra overrides nfs_export", lower: "/l", upper: "/u", work: "/w", extra: []string{"nfs_export=off"}, wantErr: "overrides nfs_export"},
		{name: "extra overrides lowerdir", lower: "/l", upper: "/u", work: "/w", extra: []string{"lowerdir=/x"}, wantErr: "overrides lowerdir"},
		{name: "too long", lower: "/" + strings.Repeat("x", 4096), upper: "/u", work: "/w", wantErr: "more than the 4095"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := overlayOptions(tt.lower, tt.upper, tt.work, tt.extra)
			if tt.wantErr != "" {
				wantErr(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestAUFSOptions(t *testing.T) {
	tests := []struct {
		name         string
		upper, lower string
		extra        []string
		want         string
		wantErr      string
	}{
		{name: "plain", upper: "/ov/N/upper", lower: "/root", want: "br=/ov/N/upper=rw:/root=ro"},
		{name: "extra", upper: "/u", lower: "/l", extra: []string{"xino=/x/.xino", "trunc_xino"}, want: "br=/u=rw:/l=ro,xino=/x/.xino,trunc_xino"},
		{name: "colon splits branches", upper: "/u:/etc", lower: "/l", wantErr: `contains ':'`},
		{name: "equals sets branch mode", upper: "/u=ro", lower: "/l", wantErr: `contains '='`},
		{name: "comma", upper: "/u", lower: "/l,x", wantErr: `contains ','`},
		{name: "extra overrides br", upper: "/u", lower: "/l", extra: []string{"br=/x"}, wantErr: "overrides br"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := aufsOptions(tt.upper, tt.lower, tt.extra)
			if tt.wantErr != "" {
				wantErr(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestListsFS(t *testing.T) {
	const filesystems = "nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\nnodev\taufs2\n"
	tests := []struct {
		fstype string
		want   bool
	}{
		{"overlay", true}, {"ext4", true}, {"tmpfs", true},
		{"aufs", false}, {"nodev", false}, {"ext", false},
	}
	for _, tt := range tests {
		t.Run(tt.fstype, func(t *testing.T) {
			if got := listsFS([]byte(filesystems), tt.fstype); got != tt.want {
				t.Errorf("listsFS(%q) = %v, want %v", tt.fstype, got, tt.want)
			}
		})
	}
}

func TestTopMounts(t *testing.T) {
	infos := []*mountinfo.Info{
		{ID: 10, Parent: 1, Mountpoint: "/n/A", FSType: "tmpfs"},
		{ID: 11, Parent: 1, Mountpoint: "/n/B", FSType: "overlay"},
		// 12 is mounted on top of 10, 13 on top of 12.
		{ID: 13, Parent: 12, Mountpoint: "/n/A", FSType: "overlay"},
		{ID: 12, Parent: 10, Mountpoint: "/n/A", FSType: "ext4"},
	}
	top := topMounts(infos)
	got := map[string]int{}
	for mp, i := range top {
		got[mp] = i.ID
	}
	want := map[string]int{"/n/A": 13, "/n/B": 11}
	if !maps.Equal(got, want) {
		t.Errorf("topMounts = %v, want %v", got, want)
	}
}

func TestSuperOption(t *testing.T) {
	info := &mountinfo.Info{VFSOptions: "rw,lowerdir=/r,upperdir=/o/N/upper,workdir=/o/N/work,index=on,uuid=on,nfs_export=on"}
	tests := []struct {
		key, want string
		ok        bool
	}{
		{"lowerdir", "/r", true}, {"upperdir", "/o/N/upper", true},
		{"nfs_export", "on", true}, {"rw", "", true}, {"metacopy", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, ok := superOption(info, tt.key)
			if got != tt.want || ok != tt.ok {
				t.Errorf("superOption(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	base := diskTempDir(t)
	mk := func(name string) string {
		p := filepath.Join(base, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root, nodes, ovl := mk("root"), mk("nodes"), mk("overlays")
	file := filepath.Join(base, "file")
	testenv.WriteFile(t, file, "")
	if err := os.Symlink(mk("odd,name"), filepath.Join(base, "link-to-odd")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{name: "comma", o: Options{RootDir: mk("a,b"), NodeDir: nodes, OverlayDir: ovl}, wantErr: `contains ','`},
		{name: "colon", o: Options{RootDir: root, NodeDir: mk("a:b"), OverlayDir: ovl}, wantErr: `contains ':'`},
		{name: "backslash", o: Options{RootDir: root, NodeDir: nodes, OverlayDir: mk(`a\b`)}, wantErr: `contains '\\'`},
		{name: "space", o: Options{RootDir: mk("a b"), NodeDir: nodes, OverlayDir: ovl}, wantErr: "whitespace"},
		{name: "comma after resolving", o: Options{RootDir: filepath.Join(base, "link-to-odd"), NodeDir: nodes, OverlayDir: ovl}, wantErr: "(resolved)"},
		{name: "missing", o: Options{RootDir: filepath.Join(base, "nope"), NodeDir: nodes, OverlayDir: ovl}, wantErr: "no such file"},
		{name: "not a dir", o: Options{RootDir: root, NodeDir: file, OverlayDir: ovl}, wantErr: "not a directory"},
		{name: "unset", o: Options{RootDir: root, OverlayDir: ovl}, wantErr: "node dir is not set"},
		{name: "unknown type", o: Options{Type: "unionfs", RootDir: root, NodeDir: nodes, OverlayDir: ovl}, wantErr: `unknown type "unionfs"`},
		{name: "node dir in root", o: Options{RootDir: root, NodeDir: mk("root/nodes"), OverlayDir: ovl}, wantErr: "overlap"},
		{name: "root in overlay dir", o: Options{RootDir: mk("overlays/root"), NodeDir: nodes, OverlayDir: ovl}, wantErr: "overlap"},
		{name: "same dir", o: Options{RootDir: root, NodeDir: ovl, OverlayDir: ovl}, wantErr: "overlap"},
		{name: "extra overrides index", o: Options{RootDir: root, NodeDir: nodes, OverlayDir: ovl, Extra: []string{"index=off"}}, wantErr: "overrides index"},
		{name: "extra with comma", o: Options{RootDir: root, NodeDir: nodes, OverlayDir: ovl, Extra: []string{"xino=on,metacopy=on"}}, wantErr: "contains ','"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.o)
			if m != nil {
				t.Errorf("New returned a Manager with error %v", err)
			}
			wantErr(t, err, tt.wantErr)
		})
	}

	t.Run("resolves symlinks", func(t *testing.T) {
		link := filepath.Join(base, "root-link")
		if err := os.Symlink(root, link); err != nil {
			t.Fatal(err)
		}
		m, err := New(Options{RootDir: link, NodeDir: nodes, OverlayDir: ovl})
		if err != nil {
			t.Fatal(err)
		}
		p := mustPaths(t, m, node.MustParse("C0A80102"))
		want := Paths{
			Mount: filepath.Join(nodes, "C0A80102"),
			Upper: filepath.Join(ovl, "C0A80102", "upper"),
			Work:  filepath.Join(ovl, "C0A80102", "work"),
			Lower: root,
		}
		if p != want {
			t.Errorf("Paths = %+v, want %+v", p, want)
		}
		if m.typ != Overlayfs {
			t.Errorf("default type %q, want %q", m.typ, Overlayfs)
		}
	})
}

func TestAUFSUnsupported(t *testing.T) {
	data, err := os.ReadFile(procFilesystems)
	if err != nil {
		t.Fatal(err)
	}
	if listsFS(data, "aufs") {
		t.Skip("this kernel has aufs; the test is for kernels without it")
	}
	o := testLayout(t)
	o.Type = AUFS
	m, err := New(o)
	if m != nil || err == nil {
		t.Fatalf("New(aufs) = %v, %v; want an error", m, err)
	}
	if want := "aufs is not supported by this kernel (not in /proc/filesystems)"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

// TestBadNodeNames: hostile names never become a node.ID (node's parser
// refuses them, tested there), so what reaches the Manager is at worst the
// zero ID. Every operation refuses it and creates nothing.
func TestBadNodeNames(t *testing.T) {
	m := newTestManager(t)
	for _, name := range []string{"", "C0A8010", "C0A801020", "C0A8010G", "../../etc", "C0A80102/", "01-52-54-00-12-34-56", " C0A80102", "default"} {
		if id, err := node.ParseHex(name); err == nil {
			t.Errorf("node.ParseHex(%q) = %v, want an error", name, id)
		}
	}
	ops := map[string]func(node.ID) error{
		"Paths":   func(n node.ID) error { _, err := m.Paths(n); return err },
		"Mount":   func(n node.ID) error { _, err := m.Mount(n); return err },
		"Mounted": func(n node.ID) error { _, err := m.Mounted(n); return err },
		"Unmount": m.Unmount,
		"Detach":  m.UnmountDetach,
		"Wipe":    func(n node.ID) error { _, err := m.Wipe(n); return err },
		"Remove":  m.Remove,
	}
	for _, op := range slices.Sorted(maps.Keys(ops)) {
		t.Run(op, func(t *testing.T) {
			wantErr(t, ops[op](node.ID{}), "no node given")
		})
	}
	entries, err := os.ReadDir(m.nodeDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Errorf("node dir has entries after bad names: %v", entries)
	}
}

// TestSymlinkEscape plants symlinks where the node's directories go; they
// must be refused, not followed out of the node and overlay dirs.
func TestSymlinkEscape(t *testing.T) {
	const name = "C0A80102"
	tests := []struct {
		name string
		link func(o Options) string // where the symlink goes
	}{
		{"mount point", func(o Options) string { return filepath.Join(o.NodeDir, name) }},
		{"node overlay dir", func(o Options) string { return filepath.Join(o.OverlayDir, name) }},
		{"upper", func(o Options) string { return filepath.Join(o.OverlayDir, name, "upper") }},
		{"work", func(o Options) string { return filepath.Join(o.OverlayDir, name, "work") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testLayout(t)
			m, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			outside := filepath.Join(filepath.Dir(o.RootDir), "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			link := tt.link(o)
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, link); err != nil {
				t.Fatal(err)
			}
			wantErr(t, m.makeDirs(node.MustParse(name)), "a symlink")
			if entries, _ := os.ReadDir(outside); len(entries) > 0 {
				t.Errorf("created %v outside", entries)
			}
		})
	}
}

func TestUnmountNotMounted(t *testing.T) {
	m := newTestManager(t)
	for _, name := range []string{"C0A80102", "0A000001"} {
		id := node.MustParse(name)
		if err := m.Unmount(id); err != nil {
			t.Errorf("Unmount(%s) of a node never mounted: %v", id, err)
		}
		if mounted, err := m.Mounted(id); mounted || err != nil {
			t.Errorf("Mounted(%s) = %v, %v; want false, nil", id, mounted, err)
		}
	}
	if err := m.Remove(node.MustParse("C0A80102")); err != nil {
		t.Errorf("Remove of a node never created: %v", err)
	}
}
