package render

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzRender(f *testing.F) {
	for _, s := range []string{
		"<NODE>", "a=<NODE>\nb=<NODE>\n", "<NODE><NODE>", "<<NODE>>", "<NODE",
		"{{.Node}}", "{{.IP}} {{.Vars.x}}", "{{if .NodeDir}}{{.NodeDir}}{{else}}<NODE>{{end}}",
		"{{define \"a\"}}{{.IP}}{{end}}{{template \"a\" .}}", "{{with .Vars}}{{$.Node}}{{end}}",
		"{{range $k, $v := .Vars}}{{$k}}{{end}}<NODE>", "{{.Foo}}", "{{if}}", "{{/* c */}}<NODE>",
		"{{\"<NODE>\"}}", "DEFAULT linux\n", "{<NODE>}", "{{<NODE>",
	} {
		f.Add(s)
	}
	other := Data{Node: "0A000011", IP: "10.0.0.17", Name: "0A000011", Vars: map[string]string{"x": "<NODE>"}}
	f.Fuzz(func(t *testing.T, src string) {
		// text/template has no step limit: a range over a large integer
		// spins for as long as it likes without writing. That is the
		// admin's own template's cost, not a bug, so keep it out of here.
		// Integers come from literals or from len (nested ranges over
		// len of the 41-byte .CallbackURL ran for minutes).
		if strings.Contains(src, "range") && (strings.ContainsAny(src, "0123456789") || strings.Contains(src, "len")) {
			t.Skip()
		}
		// Plain text naming the node is always a valid template.
		plain := !strings.Contains(src, "{{")
		tmpl, err := Parse("fuzz", []byte(src))
		if plain && strings.Contains(src, Placeholder) && err != nil {
			t.Fatalf("plain text with %s rejected: %v", Placeholder, err)
		}
		if err != nil {
			if tmpl != nil {
				t.Fatalf("Parse returned a template and error %v", err)
			}
			return
		}
		for _, d := range []Data{SampleData(), other} {
			a, errA := tmpl.Render(d)
			b, errB := tmpl.Render(d)
			if (errA == nil) != (errB == nil) {
				t.Fatalf("Render twice: errors %v, %v", errA, errB)
			}
			if errA != nil {
				if a != nil || b != nil {
					t.Fatalf("Render returned bytes with error %v", errA)
				}
				continue
			}
			if a == nil || !bytes.Equal(a, b) {
				t.Fatalf("Render twice differs: %q vs %q", a, b)
			}
			if len(a) > MaxSize {
				t.Fatalf("Render returned %d bytes, above MaxSize", len(a))
			}
			// Without actions the template is text, and the output must be
			// exactly the text with each placeholder replaced: the length
			// check the original tool got wrong.
			if plain {
				if want := strings.ReplaceAll(src, Placeholder, d.Node); string(a) != want {
					t.Fatalf("plain text rendered %q, want %q", a, want)
				}
			}
		}
	})
}
