package pxename

import (
	"errors"
	"net"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		kind Kind   // 0: rejected
		want string // KindIP: dotted address; KindMAC: colon MAC
		err  error  // specific reason expected, if any
	}{
		{"hex upper", "C0A80102", KindIP, "192.168.1.2", nil},
		{"hex lower", "c0a80102", KindIP, "192.168.1.2", nil},
		{"hex mixed", "c0A8010f", KindIP, "192.168.1.15", nil},
		{"hex zero", "00000000", KindIP, "0.0.0.0", nil},
		{"hex all ones", "FFFFFFFF", KindIP, "255.255.255.255", nil},
		{"mac", "01-aa-bb-cc-dd-ee-ff", KindMAC, "aa:bb:cc:dd:ee:ff", nil},
		{"mac digits", "01-52-54-00-12-34-56", KindMAC, "52:54:00:12:34:56", nil},

		{"empty", "", 0, "", errEmpty},
		{"prefix 7", "C0A8010", 0, "", errNotForm},
		{"prefix 1", "C", 0, "", errNotForm},
		{"9 digits", "C0A801020", 0, "", errNotForm},
		{"default", "default", 0, "", errNotForm},
		{"uuid", "b8945908-d6a6-41a9-611d-74a6ab80b83d", 0, "", errNotForm},
		{"dot", ".", 0, "", errNotForm},
		{"dotdot", "..", 0, "", errNotForm},
		{"overlong", strings.Repeat("A", MaxNameLen+1), 0, "", errTooLong},
		{"overlong mac-like", "01-" + strings.Repeat("aa-", 100), 0, "", errTooLong},
		{"NUL in hex", "C0A8\x000102"[:8], 0, "", errNotHex8},
		{"NUL suffix", "C0A80102\x00", 0, "", errNotForm},
		{"slash", "C0A8/102", 0, "", errNotHex8},
		{"path", "../C0A80102", 0, "", errNotForm},
		{"leading space", " C0A8010", 0, "", errNotHex8},
		{"trailing space", "C0A80102 ", 0, "", errNotForm},
		{"sign", "+C0A8010", 0, "", errNotHex8},
		{"0x", "0xC0A801", 0, "", errNotHex8},
		{"underscore", "C0A8_102", 0, "", errNotHex8},
		{"unicode digits", "١٢٣٤", 0, "", errNotHex8}, // 4 Arabic-Indic digits, 8 bytes
		{"fullwidth digit", "C0A8010１", 0, "", errNotForm},
		{"g", "C0A8010G", 0, "", errNotHex8},
		{"mac upper", "01-AA-BB-CC-DD-EE-FF", 0, "", errMACCase},
		{"mac one upper", "01-aa-bb-cc-dd-ee-fF", 0, "", errMACCase},
		{"mac 5 pairs", "01-aa-bb-cc-dd-ee", 0, "", errMACPairs},
		{"mac 7 pairs", "01-aa-bb-cc-dd-ee-ff-00", 0, "", errMACPairs},
		{"mac 8 pairs", "01-aa-bb-cc-dd-ee-ff-00-11", 0, "", errMACPairs},
		{"mac colons", "01-aa:bb:cc:dd:ee:ff", 0, "", errMACPairs},
		{"mac dots", "01-aabb.ccdd.eeff", 0, "", errMACPairs},
		{"mac single digits", "01-a-bb-cc-dd-ee-fff", 0, "", errMACPairs},
		{"mac trailing dash", "01-aa-bb-cc-dd-eeff-", 0, "", errMACPairs},
		{"mac g", "01-aa-bb-cc-dd-ee-fg", 0, "", errMACPairs},
		{"mac trailing space", "01-aa-bb-cc-dd-ee-ff ", 0, "", errMACPairs},
		{"arp type 02", "02-aa-bb-cc-dd-ee-ff", 0, "", errHWType},
		{"arp type 20 infiniband", "20-aa-bb-cc-dd-ee-ff", 0, "", errHWType},
		{"arp type 1", "1-aa-bb-cc-dd-ee-ff", 0, "", errNotForm},
		{"no type", "aa-bb-cc-dd-ee-ff", 0, "", errHWType},
		{"bare mac", "aabbccddeeff", 0, "", errNotForm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse(tt.in)
			if tt.kind == 0 {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want error", tt.in, n)
				}
				if !errors.Is(err, ErrNotNode) {
					t.Errorf("Parse(%q) error %v does not wrap ErrNotNode", tt.in, err)
				}
				if tt.err != nil && err != tt.err {
					t.Errorf("Parse(%q) error = %v, want %v", tt.in, err, tt.err)
				}
				if n.Kind != 0 || n.ID.IsValid() || n.MAC != nil {
					t.Errorf("Parse(%q) returned non-zero Name %+v with error", tt.in, n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tt.in, err)
			}
			if n.Kind != tt.kind {
				t.Fatalf("Parse(%q).Kind = %v, want %v", tt.in, n.Kind, tt.kind)
			}
			switch n.Kind {
			case KindIP:
				if got := n.ID.Addr().String(); got != tt.want {
					t.Errorf("Parse(%q).ID = %s, want %s", tt.in, got, tt.want)
				}
				if n.MAC != nil {
					t.Errorf("Parse(%q).MAC = %v, want nil", tt.in, n.MAC)
				}
				if got, want := n.String(), strings.ToUpper(tt.in); got != want {
					t.Errorf("String() = %q, want %q", got, want)
				}
			case KindMAC:
				if got := ColonMAC(n.MAC); got != tt.want {
					t.Errorf("Parse(%q).MAC = %s, want %s", tt.in, got, tt.want)
				}
				if n.ID.IsValid() {
					t.Errorf("Parse(%q).ID = %v, want zero", tt.in, n.ID)
				}
				if got := n.String(); got != tt.in {
					t.Errorf("String() = %q, want %q", got, tt.in)
				}
			}
		})
	}
}

func TestParseErrorMessages(t *testing.T) {
	_, err := Parse("C0A8010")
	if got, want := err.Error(), "not a node name: neither 8 hex digits nor 01-<mac>"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	_, err = Parse("C0A8010Z")
	if got, want := err.Error(), "not a node name: not 8 hex digits"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

// Rejecting is the common case (UUIDs and prefixes come first on every
// boot), so it must not allocate; accepting allocates only the MAC bytes.
func TestParseAllocs(t *testing.T) {
	tests := []struct {
		in   string
		max  float64
		fail bool
	}{
		{"C0A80102", 0, false},
		{"01-aa-bb-cc-dd-ee-ff", 1, false},
		{"C0A8010", 0, true},
		{"b8945908-d6a6-41a9-611d-74a6ab80b83d", 0, true},
		{"01-AA-BB-CC-DD-EE-FF", 0, true},
		{"default", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() {
				_, err := Parse(tt.in)
				if (err != nil) != tt.fail {
					t.Fatalf("Parse(%q) error = %v", tt.in, err)
				}
			})
			if allocs > tt.max {
				t.Errorf("Parse(%q): %v allocations, want <= %v", tt.in, allocs, tt.max)
			}
		})
	}
}

func TestMACNames(t *testing.T) {
	tests := []struct {
		name  string
		mac   net.HardwareAddr
		pxe   string
		colon string
	}{
		{"ethernet", net.HardwareAddr{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}, "01-aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff"},
		{"low bytes", net.HardwareAddr{0, 1, 2, 0x0a, 0x10, 0xf0}, "01-00-01-02-0a-10-f0", "00:01:02:0a:10:f0"},
		{"nil", nil, "", ""},
		{"5 bytes", net.HardwareAddr{1, 2, 3, 4, 5}, "", ""},
		{"eui64", net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MACName(tt.mac); got != tt.pxe {
				t.Errorf("MACName = %q, want %q", got, tt.pxe)
			}
			if got := ColonMAC(tt.mac); got != tt.colon {
				t.Errorf("ColonMAC = %q, want %q", got, tt.colon)
			}
		})
	}
}

func TestCheckStatic(t *testing.T) {
	tests := []struct {
		name string
		in   string
		err  error // nil: accepted
	}{
		{"default", "default", nil},
		{"dotted", "menu.c32", nil},
		{"hex prefix", "C0A8", nil},
		{"dot prefix", ".hidden", nil},
		{"three dots", "...", nil},
		{"space", "a b", nil},
		{"max", strings.Repeat("a", MaxNameLen), nil},
		{"empty", "", errStatEmpty},
		{"too long", strings.Repeat("a", MaxNameLen+1), errStatLong},
		{"dot", ".", errStatDot},
		{"dotdot", "..", errStatDot},
		{"slash", "a/b", errStatSlash},
		{"parent", "../etc/passwd", errStatSlash},
		{"NUL", "a\x00b", errStatNUL},
		{"newline", "a\nb", errStatCtrl},
		{"tab", "\tdefault", errStatCtrl},
		{"DEL", "a\x7f", errStatCtrl},
		{"utf8", "défault", errStatNonASC},
		{"invalid utf8", "\xff", errStatNonASC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckStatic(tt.in)
			if err != tt.err {
				t.Fatalf("CheckStatic(%q) = %v, want %v", tt.in, err, tt.err)
			}
			if err != nil && !errors.Is(err, ErrBadName) {
				t.Errorf("error %v does not wrap ErrBadName", err)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindIP: "ip", KindMAC: "mac", 0: "Kind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for _, name := range []string{
		"C0A80102",
		"01-aa-bb-cc-dd-ee-ff",
		"b8945908-d6a6-41a9-611d-74a6ab80b83d",
		"C0A8010",
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Parse(name)
			}
		})
	}
}
