package pxename

import (
	"errors"
	"testing"
)

func TestParseGRUB(t *testing.T) {
	tests := []struct {
		name string
		want string // Name.String(); "" for not a node
		kind Kind
	}{
		{"grub.cfg-01-52-54-00-12-34-56", "01-52-54-00-12-34-56", KindMAC},
		{"grub.cfg-52:54:00:12:34:56", "01-52-54-00-12-34-56", KindMAC},
		{"grub.cfg-C0A80102", "C0A80102", KindIP},
		{"grub.cfg-192.168.1.2", "C0A80102", KindIP},
		{"grub.cfg-52:54:00:12:34:5G", "", 0},
		{"grub.cfg-52:54:00:12:34:56:78", "", 0},
		{"grub.cfg-52:54:00:12:34", "", 0},
		{"grub.cfg-52:54:00:12:34:5", "", 0},
		{"grub.cfg-52:54:00:AB:34:56", "", 0},     // upper case: not canonical
		{"grub.cfg-01-52-54-00-AB-34-56", "", 0},  // likewise
		{"grub.cfg-02-52-54-00-12-34-56", "", 0},  // not Ethernet
		{"grub.cfg-c0a80102", "C0A80102", KindIP}, // as pxelinux names: either case
		{"grub.cfg-C0A8010", "", 0},               // a hex prefix GRUB 2.12 tries: not a node
		{"grub.cfg-C0A8", "", 0},
		{"grub.cfg-C", "", 0},
		{"grub.cfg-192.168.001.002", "", 0},
		{"grub.cfg-192.168.1", "", 0},
		{"grub.cfg-::1", "", 0},
		{"grub.cfg-", "", 0},
		{"grub.cfg", "", 0},
		{"grub.cfg-../../etc/passwd", "", 0},
		{"grub.cfg-01-52-54-00-12-34-56/x", "", 0},
		{"C0A80102", "", 0},                                      // a pxelinux name is not a GRUB one
		{"grub.cfg-5cd5ef4a-0000-1000-8000-525400123456", "", 0}, // UUID
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseGRUB(tt.name)
			if tt.want == "" {
				if err == nil || !errors.Is(err, ErrNotNode) {
					t.Fatalf("ParseGRUB = %v, %v; want ErrNotNode", n, err)
				}
				return
			}
			if err != nil || n.String() != tt.want || n.Kind != tt.kind {
				t.Fatalf("ParseGRUB = %v (%v), %v; want %s (%v)", n, n.Kind, err, tt.want, tt.kind)
			}
		})
	}
}
