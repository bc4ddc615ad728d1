package node

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
)

func TestParseHex(t *testing.T) {
	tests := []struct {
		in   string
		want string // dotted; "" for an error
	}{
		{"C0A80102", "192.168.1.2"},
		{"c0a80102", "192.168.1.2"},
		{"C0a80102", "192.168.1.2"},
		{"00000000", "0.0.0.0"},
		{"FFFFFFFF", "255.255.255.255"},
		{"C0A8010", ""},
		{"C0A801020", ""},
		{"C0A8010G", ""},
		{"+0A80102", ""},
		{"0xA80102", ""},
		{"C0A_0102", ""},
		{"C0A80102\x00", ""},
		{"        ", ""},
		{"-C0A8010", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			id, err := ParseHex(tt.in)
			if tt.want == "" {
				if err == nil || !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseHex(%q) = %v, %v; want an error wrapping ErrInvalid", tt.in, id, err)
				}
				if id.IsValid() {
					t.Errorf("ParseHex(%q) returned a valid ID with its error", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHex(%q): %v", tt.in, err)
			}
			if got := id.Addr().String(); got != tt.want {
				t.Errorf("ParseHex(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in, want string // want: hex name, "" for an error
	}{
		{"C0A80102", "C0A80102"},
		{"c0a80102", "C0A80102"},
		{"192.168.1.2", "C0A80102"},
		{"10.0.2.15", "0A00020F"},
		{"::ffff:192.168.1.2", ""},
		{"2001:db8::1", ""},
		{"192.168.1", ""},
		{"192.168.1.2/32", ""},
		{"node1", ""},
		{"../../etc", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			id, err := Parse(tt.in)
			if tt.want == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse(%q) = %v, %v; want ErrInvalid", tt.in, id, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if id.String() != tt.want {
				t.Errorf("Parse(%q) = %s, want %s", tt.in, id, tt.want)
			}
		})
	}
}

func TestFromAddr(t *testing.T) {
	if _, err := FromAddr(netip.MustParseAddr("::ffff:10.0.0.1")); err == nil {
		t.Error("FromAddr accepted an IPv4-mapped IPv6 address")
	}
	if _, err := FromAddr(netip.Addr{}); err == nil {
		t.Error("FromAddr accepted the zero address")
	}
	id, err := FromAddr(netip.MustParseAddr("10.0.0.1"))
	if err != nil || id.String() != "0A000001" || id.Uint32() != 0x0A000001 {
		t.Errorf("FromAddr(10.0.0.1) = %s (%#x), %v", id, id.Uint32(), err)
	}
	if FromUint32(0x0A000001) != id {
		t.Error("FromUint32 and FromAddr disagree")
	}
}

func TestZero(t *testing.T) {
	var id ID
	if id.IsValid() || id.String() != "" || id.Uint32() != 0 || id.Addr().IsValid() {
		t.Errorf("zero ID: valid=%v string=%q uint=%d", id.IsValid(), id, id.Uint32())
	}
	if id.Compare(MustParse("00000001")) >= 0 {
		t.Error("zero ID does not sort first")
	}
}

func TestText(t *testing.T) {
	type rec struct {
		Node ID `json:"node"`
	}
	b, err := json.Marshal(rec{MustParse("192.168.1.2")})
	if err != nil || string(b) != `{"node":"C0A80102"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var r rec
	if err := json.Unmarshal(b, &r); err != nil || r.Node != MustParse("C0A80102") {
		t.Fatalf("Unmarshal = %v, %v", r.Node, err)
	}
	for _, bad := range []string{`{"node":"c0a80102"}`, `{"node":"192.168.1.2"}`, `{"node":"C0A8010"}`} {
		if err := json.Unmarshal([]byte(bad), &r); !errors.Is(err, ErrInvalid) {
			t.Errorf("Unmarshal(%s) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := json.Unmarshal([]byte(`{"node":""}`), &r); err != nil || r.Node.IsValid() {
		t.Errorf(`Unmarshal("") = %v, %v; want the zero ID`, r.Node, err)
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParse did not panic on a bad name")
		}
	}()
	MustParse("nope")
}

func TestParseHexAllocs(t *testing.T) {
	// Most names a tftpd looks up are not nodes; refusing one is free.
	if n := testing.AllocsPerRun(100, func() { ParseHex("01-aa-bb-cc-dd-ee-ff") }); n != 0 {
		t.Errorf("ParseHex of a non-node allocates %v times", n)
	}
}

// FuzzParse checks that whatever Parse accepts round-trips through String.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"C0A80102", "c0a80102", "10.0.0.1", "", "::1", "0A00000G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		back, err := ParseHex(id.String())
		if err != nil || back != id {
			t.Fatalf("Parse(%q) = %s, which does not round-trip: %v, %v", s, id, back, err)
		}
	})
}
