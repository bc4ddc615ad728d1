package pxename

import (
	"errors"
	"testing"
)

func TestParseIPXE(t *testing.T) {
	tests := []struct {
		name, want string // want: the canonical name; "" for not a node
	}{
		{"c0a80102", "C0A80102"},
		{"C0A80102", "C0A80102"},
		{"192.168.1.2", "C0A80102"},
		{"01-52-54-00-12-34-56", "01-52-54-00-12-34-56"},
		{"01-52-54-00-AB-CD-EF", "01-52-54-00-ab-cd-ef"},
		{"192.168.001.002", ""},
		{"192.168.1", ""},
		{"::1", ""},
		{"boot.ipxe", ""},
		{"c0a8010", ""},
		{"02-52-54-00-12-34-56", ""},
		{"", ""},
	}
	for _, tt := range tests {
		n, err := ParseIPXE(tt.name)
		switch {
		case tt.want == "" && !errors.Is(err, ErrNotNode):
			t.Errorf("ParseIPXE(%q) = %v, %v; want ErrNotNode", tt.name, n, err)
		case tt.want != "" && (err != nil || n.String() != tt.want):
			t.Errorf("ParseIPXE(%q) = %v, %v; want %s", tt.name, n, err, tt.want)
		}
	}
}
