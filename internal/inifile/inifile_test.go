package inifile

import (
	"errors"
	"testing"
)

// TestValues: values are ini.v1's reading of each line, with its line.
func TestValues(t *testing.T) {
	tests := []struct{ line, key, want string }{
		{"k = 1.2.3.4 ", "k", "1.2.3.4"},
		{"k = a#b", "k", "a#b"},
		{"k = a;b", "k", "a;b"},
		{"k = a # comment", "k", "a"},
		{"k = a ; comment", "k", "a"},
		{`k = "quoted value" `, "k", "quoted value"},
		{`k = 'single'`, "k", "single"},
		{`k = "mismatched'`, "k", `"mismatched'`},
		{`k = "a" # comment`, "k", "a"},
		{"k =", "k", ""},
		{"k: v", "k", "v"},
		{"Root_Dir = /x", "root_dir", "/x"},
		{"VAR.Role = web", "var.Role", "web"},
		{"\ufeffk = bom", "k", "bom"},
	}
	for _, tt := range tests {
		f, err := Parse([]byte("# c\n"+tt.line+"\n"), 1<<20)
		if err != nil {
			t.Errorf("%q: %v", tt.line, err)
			continue
		}
		k := f.Sections[0].Key(tt.key)
		if k == nil || len(k.Values) != 1 || k.Values[0] != (Value{tt.want, 2}) {
			t.Errorf("%q: key %q = %+v, want %q on line 2", tt.line, tt.key, k, tt.want)
		}
	}
}

// TestRefused: what the dialect refuses names its line.
func TestRefused(t *testing.T) {
	for _, bad := range []string{`k = """multi`, "k = `raw", `k = a \`, "just words", "= v", "[open"} {
		_, err := Parse([]byte("[s]\nok = 1\n"+bad+"\n"), 1<<20)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != 3 {
			t.Errorf("%q: err %v, want a syntax error on line 3", bad, err)
		}
	}
}

// TestSections: repeated sections and keys keep their lines; names are
// trimmed.
func TestSections(t *testing.T) {
	f, err := Parse([]byte("# c\n[ a ]\nk = 1\n\nK: 2\n[a]\nx=y\n"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	secs := f.Sections
	if len(secs) != 3 || secs[1].Name != "a" || secs[1].Line != 2 || secs[2].Line != 6 {
		t.Fatalf("sections %+v", secs)
	}
	k := secs[1].Key("k")
	if k == nil || len(k.Values) != 2 || k.Values[0] != (Value{"1", 3}) || k.Values[1] != (Value{"2", 5}) {
		t.Errorf("key k = %+v", k)
	}
	if secs[1].KeyLine("k", 1) != 5 || secs[1].KeyLine("missing", 0) != 2 {
		t.Error("KeyLine does not fall back to the header")
	}
}
