package pxename

import (
	"errors"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"C0A80102", "c0a80102", "C0A8010", "01-aa-bb-cc-dd-ee-ff", "01-AA-BB-CC-DD-EE-FF",
		"02-aa-bb-cc-dd-ee-ff", "01-aa-bb-cc-dd-ee", "default", "..", "",
		"b8945908-d6a6-41a9-611d-74a6ab80b83d", "C0A8\x000102", "١٢٣٤",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := Parse(name)
		if err != nil {
			if !errors.Is(err, ErrNotNode) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrNotNode", name, err)
			}
			return
		}
		switch n.Kind {
		case KindIP:
			if got, want := n.ID.String(), strings.ToUpper(name); got != want {
				t.Fatalf("Parse(%q).ID = %q, want %q", name, got, want)
			}
		case KindMAC:
			if got := MACName(n.MAC); got != name {
				t.Fatalf("MACName(Parse(%q).MAC) = %q", name, got)
			}
		default:
			t.Fatalf("Parse(%q) accepted with Kind %v", name, n.Kind)
		}
		// A node name is always also harmless as a file name.
		if err := CheckStatic(name); err != nil {
			t.Fatalf("node name %q fails CheckStatic: %v", name, err)
		}
	})
}
