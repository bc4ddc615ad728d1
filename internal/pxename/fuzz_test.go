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

// FuzzParseGRUB: a GRUB name is a node only in a canonical spelling, whose
// round trip gives the same name, and is always a harmless file name.
func FuzzParseGRUB(f *testing.F) {
	for _, s := range []string{
		"grub.cfg-C0A80102", "grub.cfg-01-aa-bb-cc-dd-ee-ff", "grub.cfg-aa:bb:cc:dd:ee:ff",
		"grub.cfg-192.168.1.2", "grub.cfg-192.168.001.2", "grub.cfg-C0A8", "grub.cfg", "grub.cfg-",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := ParseGRUB(name)
		if err != nil {
			if !errors.Is(err, ErrNotNode) {
				t.Fatalf("ParseGRUB(%q) error %v does not wrap ErrNotNode", name, err)
			}
			return
		}
		rest := strings.TrimPrefix(name, GRUBPrefix)
		var canon []string
		switch n.Kind {
		case KindIP:
			canon = []string{n.ID.String(), strings.ToLower(n.ID.String()), n.ID.Addr().String()}
		case KindMAC:
			canon = []string{MACName(n.MAC), ColonMAC(n.MAC)}
		default:
			t.Fatalf("ParseGRUB(%q) accepted with Kind %v", name, n.Kind)
		}
		ok := false
		for _, c := range canon {
			ok = ok || strings.EqualFold(c, rest) && (n.Kind == KindIP || c == rest)
		}
		if !ok {
			t.Fatalf("ParseGRUB(%q) = %v: %q is none of %q", name, n, rest, canon)
		}
		if err := CheckStatic(name); err != nil {
			t.Fatalf("GRUB node name %q fails CheckStatic: %v", name, err)
		}
	})
}
