package nfsexport

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

func TestValidatePath(t *testing.T) {
	good := []string{
		"/srv/nodes/C0A80102",
		"/srv/nodes/01-52-54-00-12-34-56",
		"/a/b-c_d.e+f@g=h~i%j",
		"/x",
	}
	bad := map[string]string{
		"empty":            "",
		"relative":         "srv/nodes/x",
		"dot":              "/srv/./x",
		"dotdot":           "/srv/../x",
		"trailing slash":   "/srv/x/",
		"double slash":     "/srv//x",
		"root":             "/",
		"space":            "/srv/a b",
		"tab":              "/srv/a\tb",
		"newline":          "/srv/a\nb",
		"open paren":       "/srv/a(b",
		"close paren":      "/srv/a)b",
		"comma":            "/srv/a,b",
		"double quote":     "/srv/a\"b",
		"single quote":     "/srv/a'b",
		"backslash":        `/srv/a\b`,
		"octal escape":     `/srv/a\040b`,
		"hash":             "/srv/a#b",
		"colon":            "/srv/a:b",
		"star":             "/srv/*",
		"question":         "/srv/a?",
		"non-ASCII":        "/srv/é",
		"NUL":              "/srv/a\x00b",
		"DEL":              "/srv/a\x7fb",
		"brackets":         "/srv/[ab]",
		"dollar/semicolon": "/srv/$x;y",
	}
	for _, p := range good {
		t.Run("ok "+p, func(t *testing.T) {
			if err := ValidatePath(p); err != nil {
				t.Errorf("ValidatePath(%q) = %v", p, err)
			}
		})
	}
	for name, p := range bad {
		t.Run(name, func(t *testing.T) {
			err := ValidatePath(p)
			if !errors.Is(err, ErrInvalidExport) {
				t.Fatalf("ValidatePath(%q) = %v, want ErrInvalidExport", p, err)
			}
			if p != "" && !strings.Contains(err.Error(), "path") {
				t.Errorf("error %q does not say what is wrong", err)
			}
		})
	}
}

func TestValidateClient(t *testing.T) {
	tests := []struct {
		name string
		addr netip.Addr
		ok   bool
	}{
		{"loopback", netip.MustParseAddr("127.0.0.2"), true},
		{"private", netip.MustParseAddr("192.168.1.2"), true},
		{"zero Addr", netip.Addr{}, false},
		{"unspecified", netip.MustParseAddr("0.0.0.0"), false},
		{"IPv6", netip.MustParseAddr("fe80::1"), false},
		{"IPv6 unspecified", netip.IPv6Unspecified(), false},
		{"IPv4-mapped IPv6", netip.MustParseAddr("::ffff:192.168.1.2"), false},
		{"multicast", netip.MustParseAddr("224.0.0.1"), false},
		{"broadcast", netip.MustParseAddr("255.255.255.255"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateClient(tt.addr)
			if tt.ok != (err == nil) {
				t.Fatalf("ValidateClient(%v) = %v, want ok=%v", tt.addr, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidExport) {
				t.Errorf("error %v does not wrap ErrInvalidExport", err)
			}
		})
	}
}

func TestNone(t *testing.T) {
	ctx := context.Background()
	var x Exporter = None{}
	e := Export{Path: "/srv/nodes/x", Client: netip.MustParseAddr("127.0.0.2"), FSID: 1}
	if err := x.Export(ctx, e); err != nil {
		t.Errorf("Export: %v", err)
	}
	if ok, err := x.Exported(ctx, e); err != nil || !ok {
		t.Errorf("Exported = %v, %v; want true, nil", ok, err)
	}
	if err := x.Unexport(ctx, e); err != nil {
		t.Errorf("Unexport: %v", err)
	}
	if l, err := x.List(ctx); err != nil || len(l) != 0 {
		t.Errorf("List = %v, %v; want empty", l, err)
	}
	if u, err := x.UsedFSIDs(ctx); err != nil || u == nil || len(u) != 0 {
		t.Errorf("UsedFSIDs = %v, %v; want an empty map", u, err)
	}
	if x.Name() != "none" {
		t.Errorf("Name = %q", x.Name())
	}
}

func TestNewExportfsRejects(t *testing.T) {
	bin := fakeExportfs(t, "exit 0")
	tests := []struct {
		name    string
		o       ExportfsOptions
		wantErr string
	}{
		{"fsid in options", ExportfsOptions{Options: "rw,fsid=3"}, "fsid"},
		{"space in options", ExportfsOptions{Options: "rw ro"}, "not allowed"},
		{"parenthesis in options", ExportfsOptions{Options: "rw,(x)"}, "not allowed"},
		{"hash in options", ExportfsOptions{Options: "rw#"}, "not allowed"},
		{"empty option", ExportfsOptions{Options: "rw,,sync"}, "empty option"},
		{"relative exports file", ExportfsOptions{ExportsFile: "exports.d/x.exports"}, "absolute"},
		{"unclean exports file", ExportfsOptions{ExportsFile: "/etc/exports.d/../x.exports"}, "absolute, clean"},
		{"wrong suffix", ExportfsOptions{ExportsFile: "/etc/exports.d/pxebootfs.conf"}, ".exports"},
		{"hidden exports file", ExportfsOptions{ExportsFile: "/etc/exports.d/.pxebootfs.exports"}, ".exports"},
		{"missing binary", ExportfsOptions{Binary: "/nonexistent/exportfs"}, "/nonexistent/exportfs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.o.Binary == "" {
				tt.o.Binary = bin
			}
			x, err := NewExportfs(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewExportfs = %v, %v; want error containing %q", x, err, tt.wantErr)
			}
		})
	}

	x, err := NewExportfs(ExportfsOptions{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	if x.opts != DefaultOptions || x.etcExports != DefaultEtcExports || x.etcExportsD != DefaultEtcExportsD || x.Name() != "exportfs" {
		t.Errorf("defaults not filled in: %+v", x)
	}
}

func TestExecErrorMessage(t *testing.T) {
	inner := &exec.ExitError{}
	e := &ExecError{
		Cmd:    []string{"/usr/sbin/exportfs", "-o", "rw,fsid=1", "127.0.0.2:/srv/a", "odd arg"},
		Stderr: "exportfs: it broke",
		Err:    inner,
	}
	want := `/usr/sbin/exportfs -o rw,fsid=1 127.0.0.2:/srv/a "odd arg": ` + inner.Error() + ": exportfs: it broke"
	if e.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", e.Error(), want)
	}
	if !errors.Is(e, inner) {
		t.Error("Unwrap does not reach Err")
	}
	e.Stderr = ""
	if strings.HasSuffix(e.Error(), ": ") {
		t.Errorf("empty stderr leaves a dangling separator: %q", e.Error())
	}
}

// applyConcurrently calls f for every export at once, as a boot storm does,
// and reports each error.
func applyConcurrently(t *testing.T, ctx context.Context, f func(context.Context, Export) error, exports []Export) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(exports))
	for _, e := range exports {
		wg.Go(func() {
			if err := f(ctx, e); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
