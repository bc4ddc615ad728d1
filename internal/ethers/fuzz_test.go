package ethers

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParse checks that no input panics Parse, and that a table it accepts
// is consistent: every MAC found by IP looks up to that IP, and the MACs by
// IP add up to Len.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"00:11:22:33:44:55 10.0.0.1\n",
		"8:0:20:1:2:3 192.168.0.1 # comment\n# full\n\n",
		"02-00-00-00-00-0a 10.0.0.2\n02:00:00:00:00:0b 10.0.0.2\n",
		"00:11:22:33:44:55 10.0.0.1\n00:11:22:33:44:55 10.0.0.2\n",
		"00:11:22:33:44:55 node1\n",
		"00:11:22:33:44:55 ::ffff:1.2.3.4\r\n",
		"::::: 1.2.3.4",
		"\xff\xfe 1.2.3.4",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tab, err := Parse(strings.NewReader(s))
		if err != nil {
			if tab != nil {
				t.Fatal("Parse returned a table and an error")
			}
			if !strings.HasPrefix(err.Error(), "line ") && !strings.HasPrefix(err.Error(), "after line ") {
				t.Fatalf("error %q does not name a line", err)
			}
			return
		}
		total := 0
		for ip, macs := range tab.byIP {
			if !ip.Is4() {
				t.Fatalf("non-IPv4 address %v accepted", ip)
			}
			got := tab.MACsFor(ip)
			if len(got) != len(macs) {
				t.Fatalf("MACsFor(%v) = %d MACs, want %d", ip, len(got), len(macs))
			}
			for i, m := range got {
				if i > 0 && got[i-1].String() >= m.String() {
					t.Fatalf("MACsFor(%v) not sorted: %v", ip, got)
				}
				if a, ok := tab.Lookup(m); !ok || a != ip {
					t.Fatalf("Lookup(%v) = %v, %v; want %v", m, a, ok, ip)
				}
			}
			total += len(got)
		}
		if total != tab.Len() {
			t.Fatalf("MACs by IP add up to %d, Len() = %d", total, tab.Len())
		}
		_ = tab.MACsFor(netip.Addr{})
	})
}
