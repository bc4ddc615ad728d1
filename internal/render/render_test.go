package render

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// configOnly is a node served by IP in config-only mode: no root, no MAC.
var configOnly = Data{Node: "C0A80102", IP: "192.168.1.2", Name: "C0A80102"}

// fullMode is a node served by MAC name in full mode, with inventory data.
var fullMode = Data{
	Node:     "0A000011",
	IP:       "10.0.0.17",
	MAC:      "52:54:00:aa:bb:cc",
	Name:     "01-52-54-00-aa-bb-cc",
	FSID:     4242,
	NodeDir:  "/netboot/node/0A000011",
	Hostname: "node17",
	Vars:     map[string]string{"role": "compute", "console": "ttyS0,115200"},
}

func mustParse(t *testing.T, src string) *Template {
	t.Helper()
	tmpl, err := Parse("test.template", []byte(src))
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return tmpl
}

func TestRender(t *testing.T) {
	tests := []struct {
		name string
		src  string
		data Data
		want string
	}{
		{"one placeholder", "nfsroot=h:/n/<NODE>\n", configOnly, "nfsroot=h:/n/C0A80102\n"},
		// The original tool truncated configs with two placeholders.
		{"two placeholders", "a=<NODE>\nb=<NODE>\n", configOnly, "a=C0A80102\nb=C0A80102\n"},
		{"three on one line", "<NODE>-<NODE>-<NODE>", configOnly, "C0A80102-C0A80102-C0A80102"},
		{"adjacent", "<NODE><NODE>", configOnly, "C0A80102C0A80102"},
		{"near misses kept", "<NODE <node> NODE> <<NODE>>", configOnly, "<NODE <node> NODE> <C0A80102>"},
		{"placeholder and field", "<NODE> {{.Node}}", configOnly, "C0A80102 C0A80102"},
		{"vars not expanded again", "{{.Node}} {{.Vars.a}} {{.Vars.b}}",
			Data{Node: "C0A80102", Vars: map[string]string{"a": "<NODE>", "b": "{{.Node}}"}}, "C0A80102 <NODE> {{.Node}}"},
		{"all fields", "{{.Node}}|{{.IP}}|{{.MAC}}|{{.Name}}|{{.FSID}}|{{.NodeDir}}|{{.Hostname}}|{{.Vars.role}}",
			fullMode, "0A000011|10.0.0.17|52:54:00:aa:bb:cc|01-52-54-00-aa-bb-cc|4242|/netboot/node/0A000011|node17|compute"},
		{"empty fields", "{{.Node}}|{{.MAC}}|{{.FSID}}|{{.NodeDir}}|{{.Hostname}}", configOnly, "C0A80102||0||"},
		{"if NodeDir full", "{{if .NodeDir}}{{.NodeDir}}{{else}}/n/<NODE>{{end}}", fullMode, "/netboot/node/0A000011"},
		{"if NodeDir config-only", "{{if .NodeDir}}{{.NodeDir}}{{else}}/n/<NODE>{{end}}", configOnly, "/n/C0A80102"},
		{"placeholder in define", "{{define \"root\"}}/n/<NODE>{{end}}x={{template \"root\" .}}", configOnly, "x=/n/C0A80102"},
		{"index on missing key is empty", "<NODE>[{{index .Vars \"nope\"}}]", configOnly, "C0A80102[]"},
		{"range vars", "<NODE>{{range $k, $v := .Vars}} {{$k}}={{$v}}{{end}}", fullMode, "0A000011 console=ttyS0,115200 role=compute"},
		{"dollar inside with", "{{with .Vars}}{{.role}}@{{$.IP}}{{end}}", fullMode, "compute@10.0.0.17"},
		{"empty output", "{{if false}}{{.Node}}{{end}}", configOnly, ""},
		{"brace before placeholder", "a={<NODE>}\n{{.IP}}{<NODE>", configOnly, "a={C0A80102}\n192.168.1.2{C0A80102"},
		{"crlf kept", "A <NODE>\r\nB\r\n", configOnly, "A C0A80102\r\nB\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := mustParse(t, tt.src)
			got, err := tmpl.Render(tt.data)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
			if len(got) != len(tt.want) {
				t.Errorf("len = %d, want %d", len(got), len(tt.want))
			}
			if got == nil {
				t.Error("Render returned nil bytes without error")
			}
			if tmpl.Source() != tt.src {
				t.Errorf("Source() = %q, want %q", tmpl.Source(), tt.src)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		data    Data
		want    []string // substrings of the error
		wantErr error
	}{
		{"missing var", "<NODE>\nconsole={{.Vars.console}}\n", configOnly,
			[]string{"render test.template for node C0A80102", "test.template:2:", `map has no entry for key "console"`}, nil},
		{"missing var nil map", "<NODE> {{.Vars.role}}", Data{Node: "C0A80102"},
			[]string{`map has no entry for key "role"`}, nil},
		// The first line is written to the buffer before the failure; none
		// of it may come back.
		{"exec error after output", "line1 <NODE>\n{{slice .Hostname 0 3}}\n", configOnly,
			[]string{"test.template:2:", "slice"}, nil},
		{"too large", "<NODE>{{range .FSID}}0123456789{{end}}", Data{Node: "C0A80102", FSID: 200000},
			[]string{"larger than"}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := mustParse(t, tt.src)
			got, err := tmpl.Render(tt.data)
			if err == nil {
				t.Fatalf("Render = %q, want error", got)
			}
			if got != nil {
				t.Errorf("Render returned %d bytes with error %v", len(got), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tt.wantErr)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // substrings of the error
	}{
		{"syntax error line 3", "DEFAULT linux\n<NODE>\n{{if}}\n", []string{"/etc/x.template:3:", "missing value for if"}},
		{"unclosed action", "<NODE>\n\n{{.Node\n", []string{"unclosed action started at /etc/x.template:3"}},
		{"unknown function", "<NODE>\n{{frob .IP}}", []string{"/etc/x.template:2:", `function "frob" not defined`}},
		{"no node", "DEFAULT linux\nAPPEND root=/dev/nfs\n", []string{"/etc/x.template:1: template never uses <NODE>, .Node, .IP", "every node would get the same config"}},
		{"empty", "", []string{"/etc/x.template:1: template never uses"}},
		{"only MAC and Hostname", "{{.MAC}} {{.Hostname}} {{.FSID}}", []string{"never uses"}},
		{"node only as a var key", "{{.Vars.Node}}", []string{"never uses"}},
		{"placeholder lower case", "<node>", []string{"never uses"}},
		{"unknown field", "<NODE>\nx={{.Foo}}\n", []string{"/etc/x.template:2:", "unknown field .Foo", "fields are .Node, .IP"}},
		{"range over a number", "<NODE>\n{{range 2000000000}}{{end}}", []string{"/etc/x.template:2:", "ranges over a number"}},
		{"range over len", "<NODE>{{range $i := len .CallbackURL}}{{range len .IP}}{{end}}{{end}}", []string{"ranges over a number"}},
		{"unknown field in untaken if", "<NODE>\n{{if .Vars.x}}\n{{.Foo}}{{end}}", []string{"/etc/x.template:3:", "unknown field .Foo"}},
		{"unknown field in else of if", "<NODE>{{if .IP}}{{else}}\n{{.Ip}}{{end}}", []string{":2:", "unknown field .Ip"}},
		{"unknown field in with pipeline", "<NODE>\n{{with .Nodedir}}x{{end}}", []string{":2:", "unknown field .Nodedir"}},
		{"unknown field in else of with", "<NODE>{{with .Hostname}}{{.}}{{else}}\n{{.Bogus}}{{end}}", []string{":2:", "unknown field .Bogus"}},
		{"unknown field via dollar in range", "<NODE>{{range .Vars}}\n\n{{$.Nope}}{{end}}", []string{":3:", "unknown field .Nope"}},
		{"unknown field in if condition", "<NODE>\n{{if .Mac}}x{{end}}", []string{":2:", "unknown field .Mac"}},
		{"field of a string", "<NODE>\n{{.Node.X}}", []string{"trial render", ":2:", "can't evaluate field X"}},
		{"undefined template", "<NODE>\n{{template \"nope\" .}}", []string{"trial render", ":2:", `"nope" not defined`}},
		{"unknown field inside defined template", "{{define \"a\"}}{{.Zap}}{{end}}<NODE>{{template \"a\" .}}", []string{"trial render", "can't evaluate field Zap"}},
		{"output too large", "<NODE>{{printf \"%2000000s\" \"x\"}}", []string{"trial render", "larger than"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Parse("/etc/x.template", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want error", tt.src)
			}
			if tmpl != nil {
				t.Errorf("Parse returned a template with error %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct{ name, src string }{
		{"placeholder only", "<NODE>"},
		{"IP only", "ip={{.IP}}"},
		{"NodeDir only", "{{.NodeDir}}"},
		{"Name only", "{{.Name}}"},
		{"node in define", "{{define \"x\"}}{{.IP}}{{end}}{{template \"x\" .}}"},
		{"node in block", "{{block \"x\" .}}{{.Node}}{{end}}"},
		{"node in if", "{{if .MAC}}{{.NodeDir}}{{end}}"},
		{"node in else", "{{if .MAC}}a{{else}}{{.IP}}{{end}}"},
		{"node via dollar in with", "{{with .Vars}}{{$.Node}}{{end}}"},
		{"node via variable", "{{$d := .}}{{$d.IP}}"},
		{"node via chain", "{{(.).Node}}"},
		{"vars key unknown at parse", "<NODE> {{.Vars.anything}} {{if .Vars.other}}x{{end}}"},
		{"fields of vars elements", "<NODE>{{range $k, $v := .Vars}}{{$k}}{{end}}"},
		{"template comment", "{{/* {{.Foo}} */}}<NODE>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse("t", []byte(tt.src)); err != nil {
				t.Errorf("Parse(%q): %v", tt.src, err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.template", "APPEND nfsroot=s:/n/<NODE>\n")
	tests := []struct {
		name string
		path string
		want string // substring of the error; "" = success
	}{
		{"good", good, ""},
		{"missing", filepath.Join(dir, "missing.template"), filepath.Join(dir, "missing.template")},
		{"parse error", write("bad.template", "<NODE>\n{{end}}\n"), filepath.Join(dir, "bad.template") + ":2:"},
		{"no node", write("same.template", "DEFAULT linux\n"), filepath.Join(dir, "same.template") + ":1: template never uses"},
		{"directory", dir, dir},
		{"too big", write("big.template", "<NODE>"+strings.Repeat("x", MaxSourceSize)), filepath.Join(dir, "big.template") + ": larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Load(tt.path)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if tmpl.Name() != tt.path {
					t.Errorf("Name() = %q, want %q", tmpl.Name(), tt.path)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want error containing %q", tt.path, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
		})
	}
}

// Render is called from many FUSE callbacks at once; each result must be
// its own and complete.
func TestRenderConcurrent(t *testing.T) {
	tmpl := mustParse(t, "a=<NODE>\n{{.IP}}\n{{if .NodeDir}}{{.NodeDir}}{{end}}\n")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				d := Data{Node: fmt.Sprintf("0A00%02X%02X", g, i), IP: fmt.Sprintf("10.0.%d.%d", g, i)}
				if i%2 == 0 {
					d.NodeDir = "/netboot/node/" + d.Node
				}
				want := fmt.Sprintf("a=%s\n%s\n%s\n", d.Node, d.IP, d.NodeDir)
				got, err := tmpl.Render(d)
				if err != nil || string(got) != want {
					errs <- fmt.Errorf("Render(%+v) = %q, %v; want %q", d, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The returned slice must not alias the pooled buffer.
func TestRenderResultOwned(t *testing.T) {
	tmpl := mustParse(t, "<NODE>\n")
	a, err := tmpl.Render(configOnly)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmpl.Render(fullMode); err != nil {
		t.Fatal(err)
	}
	if string(a) != "C0A80102\n" {
		t.Errorf("first result changed to %q by a later Render", a)
	}
	if cap(a) != len(a) {
		t.Errorf("cap %d != len %d: result has spare room shared with nothing, but wastes memory", cap(a), len(a))
	}
}

func TestSampleDataPassesOwnChecks(t *testing.T) {
	d := SampleData()
	if d.Node == "" || d.IP == "" || d.MAC == "" || d.Name == "" || d.NodeDir == "" || d.Hostname == "" || d.FSID == 0 {
		t.Errorf("SampleData leaves a field empty, so {{if}} branches on it go unchecked: %+v", d)
	}
	if d.Vars != nil {
		t.Errorf("SampleData.Vars = %v, want nil", d.Vars)
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name     string
		template string
		data     Data
	}{
		{"repo-C0A80102", "../../pxelinux.cfg.template", configOnly},
		{"repo-01-52-54-00-aa-bb-cc", "../../pxelinux.cfg.template", fullMode},
		{"repo-grub-config-only", "../../grub.cfg.template", configOnly},
		{"repo-grub-full", "../../grub.cfg.template", fullMode},
		{"fields-config-only", "testdata/fields.template", configOnly},
		{"fields-full", "testdata/fields.template", fullMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Load(tt.template)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tmpl.Render(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Render(%s) differs from %s (run with -update if intended)\n--- got\n%s\n--- want\n%s", tt.template, golden, got, want)
			}
		})
	}
}

func BenchmarkRender(b *testing.B) {
	tmpl, err := Load("../../pxelinux.cfg.template")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tmpl.Render(fullMode); err != nil {
			b.Fatal(err)
		}
	}
}

func TestImageFunc(t *testing.T) {
	tmpl, err := Parse("t", []byte("KERNEL {{image \"deb\" \"vmlinuz\"}}\nAPPEND initrd={{image \"deb\" \"initrd.img\"}} ip=<NODE>\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := tmpl.Images(); !tmpl.UsesImages() || len(got) != 2 || got[0] != (ImageRef{"deb", "vmlinuz"}) {
		t.Errorf("Images() = %v", got)
	}
	tests := []struct {
		name    string
		images  ImageFunc
		want    string
		wantErr string
	}{
		{"resolved", func(n, f string) (string, error) { return "images/" + n + "/3f9c2a1b/" + f, nil },
			"KERNEL images/deb/3f9c2a1b/vmlinuz\nAPPEND initrd=images/deb/3f9c2a1b/initrd.img ip=C0A80102\n", ""},
		{"no images configured", nil, "", "tftp_root is not set"},
		{"unknown image", func(n, f string) (string, error) { return "", fmt.Errorf("image %q: not found", n) }, "", "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := SampleData()
			d.SetImages(tt.images)
			b, err := tmpl.Render(d)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || b != nil {
					t.Fatalf("Render = %q, %v; want error %q and no bytes", b, err, tt.wantErr)
				}
				return
			}
			if err != nil || string(b) != tt.want {
				t.Fatalf("Render = %q, %v; want %q", b, err, tt.want)
			}
		})
	}
}

// TestRenderEnds: templates that would spin for ever without writing (a
// count in a variable, nested ranges, exponential recursion) fail with
// ErrTooManySteps, naming the template and the range's line; at Parse when
// the trial render already spins, at Render when only a node's data makes
// it spin.
func TestRenderEnds(t *testing.T) {
	tests := []struct {
		name, src string
		atParse   bool
		line      string
	}{
		{"count in a variable", "<NODE>\n{{$n := len .CallbackURL}}{{range $n}}{{range $n}}{{range $n}}{{range $n}}{{end}}{{end}}{{end}}{{end}}", true, "t:2:"},
		{"large literal in a variable", "<NODE>\n\n{{$n := 1000000000}}{{range $n}}{{end}}", true, "t:3:"},
		// text/template's depth limit stops this one first.
		{"exponential recursion", "{{define \"a\"}}{{template \"a\" .}}{{template \"a\" .}}{{end}}<NODE>{{template \"a\" .}}", true, "maximum template depth"},
		{"nested ranges over a node's vars", "<NODE>\n{{range .Vars}}{{range $.Vars}}{{range $.Vars}}{{range $.Vars}}{{range $.Vars}}{{end}}{{end}}{{end}}{{end}}{{end}}", false, "t:2:"},
	}
	vars := map[string]string{}
	for i := range 40 {
		vars[fmt.Sprintf("v%d", i)] = "x"
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			tmpl, err := Parse("t", []byte(tt.src))
			if !tt.atParse {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				d := SampleData()
				d.Vars = vars
				_, err = tmpl.Render(d)
			}
			if err == nil || !strings.Contains(err.Error(), tt.line) || (!errors.Is(err, ErrTooManySteps) && !strings.Contains(tt.line, "depth")) {
				t.Fatalf("err = %v; want ErrTooManySteps at %s", err, tt.line)
			}
			t.Logf("%v after %v", err, time.Since(start))
		})
	}
}
