package nfsexport

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseExportfsVerbose(t *testing.T) {
	opts := func(s string) []string { return strings.Split(s, ",") }
	tests := []struct {
		name    string
		out     string
		want    []entry
		wantErr string
	}{
		{name: "empty", out: "", want: nil},
		{name: "blank lines only", out: "\n\n  \n", want: nil},
		{
			// Captured from exportfs (nfs-utils 2.6.2) -v: short paths are
			// padded to 14 columns and a tab, long ones wrap.
			name: "real output",
			out: "/mnt          \tlocalhost(sync,wdelay,hide,no_subtree_check,sec=sys,ro,root_squash,no_all_squash)\n" +
				"/tmp/tmp.2AVLvSG0VT/a b\n" +
				"\t\t127.0.0.2(sync,wdelay,hide,no_subtree_check,fsid=1,sec=sys,rw,root_squash,no_all_squash)\n" +
				"/srv          \t127.0.0.0/24(sync,wdelay,hide,no_subtree_check,fsid=3,sec=sys,ro,root_squash,no_all_squash)\n" +
				"/tmp/tmp.2AVLvSG0VT/aaaaaaaaaaaaaaaaaaaa\n" +
				"\t\t<world>(sync,wdelay,hide,no_subtree_check,fsid=2,sec=sys,rw,root_squash,no_all_squash)\n" +
				"/aaaaaaaaaaaaa\t127.0.0.4(sync,wdelay,hide,no_subtree_check,sec=sys,ro,root_squash,no_all_squash)\n",
			want: []entry{
				{"/mnt", "localhost", opts("sync,wdelay,hide,no_subtree_check,sec=sys,ro,root_squash,no_all_squash")},
				{"/tmp/tmp.2AVLvSG0VT/a b", "127.0.0.2", opts("sync,wdelay,hide,no_subtree_check,fsid=1,sec=sys,rw,root_squash,no_all_squash")},
				{"/srv", "127.0.0.0/24", opts("sync,wdelay,hide,no_subtree_check,fsid=3,sec=sys,ro,root_squash,no_all_squash")},
				{"/tmp/tmp.2AVLvSG0VT/aaaaaaaaaaaaaaaaaaaa", "<world>", opts("sync,wdelay,hide,no_subtree_check,fsid=2,sec=sys,rw,root_squash,no_all_squash")},
				{"/aaaaaaaaaaaaa", "127.0.0.4", opts("sync,wdelay,hide,no_subtree_check,sec=sys,ro,root_squash,no_all_squash")},
			},
		},
		{
			name: "same path, two clients, wrapped",
			out:  "/srv/nodes/C0A80102\n\t\t192.168.1.2(rw,fsid=7)\n/srv/nodes/C0A80102\n\t\t192.168.1.3(rw,fsid=8)\n",
			want: []entry{
				{"/srv/nodes/C0A80102", "192.168.1.2", opts("rw,fsid=7")},
				{"/srv/nodes/C0A80102", "192.168.1.3", opts("rw,fsid=8")},
			},
		},
		{
			name: "spaces instead of a tab, CRLF",
			out:  "/srv  10.0.0.1(ro,fsid=9)\r\n",
			want: []entry{{"/srv", "10.0.0.1", opts("ro,fsid=9")}},
		},
		{
			name: "wrapped path ending in a parenthesis",
			out:  "/data/my dir(1)\n\t\t10.0.0.1(ro)\n",
			want: []entry{{"/data/my dir(1)", "10.0.0.1", opts("ro")}},
		},
		{
			name: "wrapped with a blank line between",
			out:  "/long/path/name/here\n\n\t\t10.0.0.1(ro)\n",
			want: []entry{{"/long/path/name/here", "10.0.0.1", opts("ro")}},
		},
		{name: "client without a path", out: "\t\t10.0.0.1(ro)\n", wantErr: "without a path"},
		{name: "path without a client at the end", out: "/srv/x/y/z/long\n", wantErr: "without a client"},
		{name: "path then another path", out: "/srv/long/one\n/srv/long/two\n\t\t10.0.0.1(ro)\n", wantErr: "without a client"},
		{name: "client without options", out: "/srv\t10.0.0.1\n", wantErr: "not CLIENT(OPTIONS)"},
		{name: "wrapped client without options", out: "/srv/long/one\n\t\t10.0.0.1\n", wantErr: "not CLIENT(OPTIONS)"},
		{name: "empty client", out: "/srv\t(ro)\n", wantErr: "not CLIENT(OPTIONS)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseExportfsVerbose(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q (got %+v)", err, tt.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseExportsFile(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []entry
	}{
		{name: "empty", data: "", want: nil},
		{name: "comments and blanks", data: "# /srv 1.2.3.4(fsid=1)\n\n   \t\n", want: nil},
		{
			name: "one client",
			data: "/srv/a 127.0.0.5(rw,fsid=10) # trailing comment\n",
			want: []entry{{"/srv/a", "127.0.0.5", []string{"rw", "fsid=10"}}},
		},
		{
			name: "several clients, defaults, no options",
			data: "/srv/b -rw,fsid=12 127.0.0.6 127.0.0.7(ro,fsid=13) host\n",
			want: []entry{
				{"/srv/b", "127.0.0.6", []string{"rw", "fsid=12"}},
				{"/srv/b", "127.0.0.7", []string{"rw", "fsid=12", "ro", "fsid=13"}},
				{"/srv/b", "host", []string{"rw", "fsid=12"}},
			},
		},
		{
			name: "quoted path with space and hash",
			data: "\"/srv/c d#e\"\t127.0.0.8(fsid=14)\n",
			want: []entry{{"/srv/c d#e", "127.0.0.8", []string{"fsid=14"}}},
		},
		{
			name: "octal escaped path",
			data: `/srv/c\040d 127.0.0.8(fsid=15)` + "\n",
			want: []entry{{"/srv/c d", "127.0.0.8", []string{"fsid=15"}}},
		},
		{
			name: "continuation lines",
			data: "/srv/e \\\n   127.0.0.9(fsid=16) \\\n\t127.0.0.10(fsid=17)\n",
			want: []entry{
				{"/srv/e", "127.0.0.9", []string{"fsid=16"}},
				{"/srv/e", "127.0.0.10", []string{"fsid=17"}},
			},
		},
		{
			name: "everyone",
			data: "/srv/f (ro,fsid=18)\n/srv/g\n",
			want: []entry{
				{"/srv/f", "*", []string{"ro", "fsid=18"}},
				{"/srv/g", "*", nil},
			},
		},
		{
			name: "lenient: spaces inside options, no final newline",
			data: "/srv/h 127.0.0.11(ro, fsid=19)",
			want: []entry{{"/srv/h", "127.0.0.11", []string{"ro", "fsid=19"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseExportsFile(tt.data)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestEntryFSID(t *testing.T) {
	tests := []struct {
		opts   []string
		want   uint32
		wantOK bool
	}{
		{nil, 0, false},
		{[]string{"rw", "sync"}, 0, false},
		{[]string{"fsid=7"}, 7, true},
		{[]string{"fsid=0"}, 0, true},
		{[]string{"fsid=root"}, 0, true},
		{[]string{"fsid=0x10"}, 16, true},
		{[]string{"fsid=0X1f"}, 31, true},
		{[]string{"fsid=010"}, 8, true},
		{[]string{"fsid=4294967295"}, 4294967295, true},
		{[]string{"fsid=4294967296"}, 0, true}, // nfs-utils keeps 32 bits
		{[]string{"fsid=6d4a1d3e-1b7c-4a52-9c1e-0123456789ab"}, 0, false},
		{[]string{"fsid="}, 0, false},
		{[]string{"fsid=1_000"}, 0, false},
		{[]string{"fsid=+5"}, 0, false},
		{[]string{"fsid=09"}, 0, false},
		{[]string{"fsid=1", "ro", "fsid=2"}, 2, true}, // the last one wins
		{[]string{"fsid=3", "fsid=uuid-ish"}, 0, false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.opts, ","), func(t *testing.T) {
			got, ok := entry{Options: tt.opts}.fsid()
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("fsid() = %d, %v; want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestRenderExportsFileRoundTrip(t *testing.T) {
	entries := []entry{
		{"/srv/z", "127.0.0.2", []string{"rw", "fsid=2"}},
		{"/srv/a", "127.0.0.3", []string{"rw", "sync", "fsid=1"}},
		{"/srv/hand edited#x\\y\"z", "127.0.0.4", []string{"ro", "fsid=3"}},
	}
	data := string(renderExportsFile(append([]entry(nil), entries...)))
	if !strings.HasPrefix(data, exportsFileHeader) {
		t.Errorf("no header:\n%s", data)
	}
	if !strings.Contains(data, "\n/srv/a 127.0.0.3(rw,sync,fsid=1)\n/srv/hand\\040edited") {
		t.Errorf("lines not sorted or not in the PATH IP(OPTIONS) form:\n%s", data)
	}
	got := parseExportsFile(data)
	want := []entry{entries[1], entries[2], entries[0]}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", got, want)
	}
}
