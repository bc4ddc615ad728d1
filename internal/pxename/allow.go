package pxename

import (
	"net/netip"
	"strings"
)

// Allow is the policy deciding which IPv4 addresses may be served a node
// config (and, in full mode, get a root). It is immutable after NewAllow and
// safe for concurrent use. A nil *Allow applies the default policy.
type Allow struct {
	prefixes []netip.Prefix // nil: default policy
}

// Ranges the default policy refuses: none of them can be the source address
// of a booting node that we could sensibly export a root to.
var defaultDenied = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"; includes the unspecified address
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local: a node that failed DHCP
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved (RFC 1112), includes 255.255.255.255
}

var (
	unspecified = netip.IPv4Unspecified()
	broadcast   = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// NewAllow builds a policy. With no prefixes it is the default policy:
// every IPv4 address outside 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16,
// 224.0.0.0/4 and 240.0.0.0/4 (reserved, and holding the broadcast address).
// With prefixes, an address is allowed iff it lies in one of them, so an
// admin who writes 127.0.0.0/8 for a test gets exactly that; an explicit
// list never falls back to the default, even if none of its prefixes is
// valid IPv4. Either way 0.0.0.0, 255.255.255.255 and non-IPv4 addresses
// are never allowed. Prefixes are stored masked; the slice is copied.
func NewAllow(prefixes []netip.Prefix) *Allow {
	if len(prefixes) == 0 {
		return &Allow{}
	}
	ps := make([]netip.Prefix, len(prefixes))
	for i, p := range prefixes {
		ps[i] = p.Masked()
	}
	return &Allow{prefixes: ps}
}

// Allowed reports whether addr may be served.
func (a *Allow) Allowed(addr netip.Addr) bool {
	if !addr.Is4() || addr == unspecified || addr == broadcast {
		return false
	}
	if a == nil || a.prefixes == nil {
		for _, p := range defaultDenied {
			if p.Contains(addr) {
				return false
			}
		}
		return true
	}
	for _, p := range a.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// String describes the policy for logs.
func (a *Allow) String() string {
	if a == nil || a.prefixes == nil {
		var b strings.Builder
		b.WriteString("default: IPv4 except ")
		for i, p := range defaultDenied {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(p.String())
		}
		return b.String()
	}
	var b strings.Builder
	for i, p := range a.prefixes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}
