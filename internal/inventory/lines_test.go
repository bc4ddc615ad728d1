package inventory

import "testing"

// TestValue: values are read the way ini.v1 reads pxebootfs.cfg.
func TestValue(t *testing.T) {
	tests := []struct{ raw, want string }{
		{" 1.2.3.4 ", "1.2.3.4"},
		{" a#b", "a#b"},
		{" a;b", "a;b"},
		{" a # comment", "a"},
		{" a ; comment", "a"},
		{` "quoted value" `, "quoted value"},
		{` 'single' `, "single"},
		{` "mismatched'`, `"mismatched'`},
		{` "a" # comment`, "a"},
		{"", ""},
	}
	for _, tt := range tests {
		if got, err := value(tt.raw); err != nil || got != tt.want {
			t.Errorf("value(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
	for _, bad := range []string{`"""multi`, "`raw", `a \`} {
		if got, err := value(bad); err == nil {
			t.Errorf("value(%q) = %q, want an error", bad, got)
		}
	}
}

// TestParseINISections: repeated sections and keys keep their lines.
func TestParseINISections(t *testing.T) {
	secs, err := parseINI([]byte("# c\n[a]\nk = 1\n\nk: 2\n[a]\nx=y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(secs) != 3 || secs[1].name != "a" || secs[1].line != 2 || secs[2].line != 6 {
		t.Fatalf("sections %+v", secs)
	}
	k := secs[1].key("k")
	if k == nil || len(k.values) != 2 || k.values[0] != (iniValue{"1", 3}) || k.values[1] != (iniValue{"2", 5}) {
		t.Errorf("key k = %+v", k)
	}
	if secs[1].keyLine("k", 1) != 5 || secs[1].keyLine("missing", 0) != 2 {
		t.Error("keyLine does not fall back to the header")
	}
}
