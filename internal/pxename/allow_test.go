package pxename

import (
	"net/netip"
	"testing"
)

func TestAllow(t *testing.T) {
	prefixes := func(ss ...string) []netip.Prefix {
		var ps []netip.Prefix
		for _, s := range ss {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		return ps
	}
	tests := []struct {
		name    string
		allow   *Allow
		allowed []string
		denied  []string
	}{
		{
			name:    "default",
			allow:   NewAllow(nil),
			allowed: []string{"192.168.1.2", "10.0.0.1", "1.0.0.0", "223.255.255.255", "172.16.0.1", "100.64.0.1"},
			denied: []string{
				"0.0.0.0", "0.1.2.3", "255.255.255.255", "127.0.0.1", "127.255.255.254",
				"169.254.1.1", "224.0.0.1", "239.255.255.250", "240.0.0.1", "254.1.1.1",
				"::1", "2001:db8::1", "::ffff:192.168.1.2",
			},
		},
		{
			name:    "empty slice is default",
			allow:   NewAllow([]netip.Prefix{}),
			allowed: []string{"192.168.1.2"},
			denied:  []string{"127.0.0.1", "0.0.0.0"},
		},
		{
			name:    "nil Allow is default",
			allow:   nil,
			allowed: []string{"192.168.1.2"},
			denied:  []string{"127.0.0.1"},
		},
		{
			name:    "explicit",
			allow:   NewAllow(prefixes("192.168.1.0/24", "10.0.0.0/8")),
			allowed: []string{"192.168.1.2", "192.168.1.254", "10.200.0.1"},
			denied:  []string{"192.168.2.1", "172.16.0.1", "127.0.0.1", "::ffff:192.168.1.2"},
		},
		{
			name:    "explicit loopback for tests",
			allow:   NewAllow(prefixes("127.0.0.0/8")),
			allowed: []string{"127.0.0.1", "127.1.2.3"},
			denied:  []string{"192.168.1.2"},
		},
		{
			name:    "explicit everything still refuses 0.0.0.0 and broadcast",
			allow:   NewAllow(prefixes("0.0.0.0/0")),
			allowed: []string{"192.168.1.2", "127.0.0.1", "240.0.0.1", "0.0.0.1"},
			denied:  []string{"0.0.0.0", "255.255.255.255", "::1"},
		},
		{
			name:    "unmasked prefix",
			allow:   NewAllow(prefixes("192.168.1.77/24")),
			allowed: []string{"192.168.1.2"},
			denied:  []string{"192.168.2.2"},
		},
		{
			name:    "ipv6 prefix only never falls back to default",
			allow:   NewAllow(prefixes("2001:db8::/32")),
			allowed: nil,
			denied:  []string{"192.168.1.2", "2001:db8::1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range tt.allowed {
				if !tt.allow.Allowed(netip.MustParseAddr(s)) {
					t.Errorf("%v: %s denied, want allowed", tt.allow, s)
				}
			}
			for _, s := range tt.denied {
				if tt.allow.Allowed(netip.MustParseAddr(s)) {
					t.Errorf("%v: %s allowed, want denied", tt.allow, s)
				}
			}
			if tt.allow.Allowed(netip.Addr{}) {
				t.Errorf("%v: zero Addr allowed", tt.allow)
			}
		})
	}
}

func TestAllowCopiesPrefixes(t *testing.T) {
	ps := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	a := NewAllow(ps)
	ps[0] = netip.MustParsePrefix("192.168.0.0/16")
	if !a.Allowed(netip.MustParseAddr("10.1.1.1")) {
		t.Error("changing the caller's slice changed the policy")
	}
}

func TestAllowString(t *testing.T) {
	tests := []struct {
		allow *Allow
		want  string
	}{
		{NewAllow(nil), "default: IPv4 except 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 240.0.0.0/4"},
		{nil, "default: IPv4 except 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 240.0.0.0/4"},
		{NewAllow([]netip.Prefix{netip.MustParsePrefix("10.1.2.3/8"), netip.MustParsePrefix("192.168.1.0/24")}), "10.0.0.0/8, 192.168.1.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.allow.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
