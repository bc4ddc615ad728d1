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
		// These spun for minutes before renders had a step budget.
		"{{$n := len .CallbackURL}}{{range $n}}{{range $n}}{{range $n}}{{range $n}}{{end}}{{end}}{{end}}{{end}}<NODE>",
		"{{$n := 1000000000}}{{range $n}}{{end}}<NODE>",
		"{{define \"a\"}}{{template \"a\" .}}{{template \"a\" .}}{{end}}{{template \"a\" .}}<NODE>",
	} {
		f.Add(s)
	}
	other := Data{Node: "0A000011", IP: "10.0.0.17", Name: "0A000011", Vars: map[string]string{"x": "<NODE>"}}
	// Every render ends (MaxSteps); a smaller budget here keeps the many
	// looping templates the fuzzer finds cheap.
	defer func(n int) { maxSteps = n }(maxSteps)
	maxSteps = 10000
	f.Fuzz(func(t *testing.T, src string) {
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
