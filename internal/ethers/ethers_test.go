package ethers

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		input string
		mac   string // canonical, for net.ParseMAC
		ip    string // "" when the line holds no entry
	}{
		{"colon form", "00:11:22:33:44:55 192.168.1.2", "00:11:22:33:44:55", "192.168.1.2"},
		{"dash form", "00-11-22-33-44-55 192.168.1.2", "00:11:22:33:44:55", "192.168.1.2"},
		{"upper case", "AA:BB:CC:DD:EE:FF 10.0.0.1", "aa:bb:cc:dd:ee:ff", "10.0.0.1"},
		{"mixed case", "aA:Bb:cC:dD:eE:Ff 10.0.0.1", "aa:bb:cc:dd:ee:ff", "10.0.0.1"},
		{"short groups as in ethers(5)", "8:0:20:1:2:3 10.0.0.1", "08:00:20:01:02:03", "10.0.0.1"},
		{"short groups with dashes", "8-0-20-1-2-3 10.0.0.1", "08:00:20:01:02:03", "10.0.0.1"},
		{"tabs and extra spaces", "\t 00:11:22:33:44:55 \t\t 10.0.0.1  ", "00:11:22:33:44:55", "10.0.0.1"},
		{"trailing comment", "00:11:22:33:44:55 10.0.0.1 # rack 3", "00:11:22:33:44:55", "10.0.0.1"},
		{"comment glued to IP", "00:11:22:33:44:55 10.0.0.1#rack 3", "00:11:22:33:44:55", "10.0.0.1"},
		{"CRLF", "00:11:22:33:44:55 10.0.0.1\r\n", "00:11:22:33:44:55", "10.0.0.1"},
		{"full-line comment", "# 00:11:22:33:44:55 10.0.0.1", "", ""},
		{"indented comment", "   # note", "", ""},
		{"blank line", "", "", ""},
		{"whitespace only", " \t ", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Parse(strings.NewReader(tt.input))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.input, err)
			}
			if tt.ip == "" {
				if tab.Len() != 0 {
					t.Fatalf("Len() = %d, want 0", tab.Len())
				}
				return
			}
			if tab.Len() != 1 {
				t.Fatalf("Len() = %d, want 1", tab.Len())
			}
			m := mustMAC(t, tt.mac)
			got, ok := tab.Lookup(m)
			if want := netip.MustParseAddr(tt.ip); !ok || got != want {
				t.Errorf("Lookup(%s) = %v, %v; want %v", m, got, ok, want)
			}
			if macs := tab.MACsFor(netip.MustParseAddr(tt.ip)); len(macs) != 1 || macs[0].String() != m.String() {
				t.Errorf("MACsFor(%s) = %v, want [%s]", tt.ip, macs, m)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string // substring of the error
	}{
		{"hostname", "00:11:22:33:44:55 node1", "line 1: \"node1\": hostname entries are not supported, use an IPv4 address"},
		{"fqdn", "00:11:22:33:44:55 node1.example.com", "hostname entries are not supported"},
		{"error names its line", "# header\n\n00:11:22:33:44:55 10.0.0.1\n00:11:22:33:44:56 nodeb\n", "line 4: "},
		{"IPv6", "00:11:22:33:44:55 fe80::1", "not an IPv4 address"},
		{"IPv4-mapped IPv6", "00:11:22:33:44:55 ::ffff:10.0.0.1", "not an IPv4 address"},
		{"octet out of range", "00:11:22:33:44:55 10.0.0.256", "not a valid IPv4 address"},
		{"leading zero octet", "00:11:22:33:44:55 10.0.0.01", "not a valid IPv4 address"},
		{"too few octets", "00:11:22:33:44:55 10.0.1", "not a valid IPv4 address"},
		{"IPv4 with zone", "00:11:22:33:44:55 10.0.0.1%eth0", "not a valid IPv4 address"},
		{"MAC only", "00:11:22:33:44:55", "has no IP address"},
		{"IP only", "10.0.0.1", "has no IP address"},
		{"extra field", "00:11:22:33:44:55 10.0.0.1 node1", `unexpected "node1"`},
		{"five groups", "00:11:22:33:44 10.0.0.1", "not a MAC address"},
		{"seven groups", "00:11:22:33:44:55:66 10.0.0.1", "not a MAC address"},
		{"three-digit group", "000:11:22:33:44:55 10.0.0.1", "one or two hex digits"},
		{"empty group", "00::22:33:44:55 10.0.0.1", "one or two hex digits"},
		{"non-hex", "00:11:22:33:44:GG 10.0.0.1", `"GG" is not hex`},
		{"mixed separators", "00:11-22:33:44:55 10.0.0.1", "not a MAC address"},
		{"no separators", "001122334455 10.0.0.1", "not a MAC address"},
		{"dots (Cisco form)", "0011.2233.4455 10.0.0.1", "not a MAC address"},
		{"signed group", "+1:11:22:33:44:55 10.0.0.1", "not hex"},
		{"infiniband length", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01 10.0.0.1", "not a MAC address"},
		{"MAC twice with different IPs", "00:11:22:33:44:55 10.0.0.1\n# x\n0:11:22:33:44:55 10.0.0.2\n",
			"line 3: MAC 00:11:22:33:44:55 maps to 10.0.0.2 here but to 10.0.0.1 on line 1"},
		{"line too long", "00:11:22:33:44:55 10.0.0.1\n#" + strings.Repeat("x", maxLine+1), "line 2: longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Parse(strings.NewReader(tt.input))
			if err == nil {
				t.Fatalf("Parse(%q) = %d entries, want error containing %q", tt.input, tab.Len(), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Errorf("error %q does not start with the line number", err)
			}
		})
	}
}

func TestTable(t *testing.T) {
	const input = `# lab nodes
00:11:22:33:44:55  10.0.0.1
# a multi-homed node: both NICs get the same address, listed out of order
02:00:00:00:00:0b  10.0.0.2
02:00:00:00:00:0a  10.0.0.2
02-00-00-00-00-0A  10.0.0.2   # the same pair again is harmless
`
	tab, err := Parse(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 3 {
		t.Errorf("Len() = %d, want 3", tab.Len())
	}
	tests := []struct {
		mac string
		ip  string // "" for not found
	}{
		{"00:11:22:33:44:55", "10.0.0.1"},
		{"02:00:00:00:00:0a", "10.0.0.2"},
		{"02:00:00:00:00:0b", "10.0.0.2"},
		{"02:00:00:00:00:0c", ""},
	}
	for _, tt := range tests {
		t.Run("Lookup "+tt.mac, func(t *testing.T) {
			got, ok := tab.Lookup(mustMAC(t, tt.mac))
			if tt.ip == "" {
				if ok {
					t.Errorf("Lookup = %v, want not found", got)
				}
				return
			}
			if !ok || got != netip.MustParseAddr(tt.ip) {
				t.Errorf("Lookup = %v, %v; want %s", got, ok, tt.ip)
			}
		})
	}
	t.Run("Lookup wrong length", func(t *testing.T) {
		if _, ok := tab.Lookup(net.HardwareAddr{0, 0x11, 0x22}); ok {
			t.Error("found a 3-byte address")
		}
		if _, ok := tab.Lookup(nil); ok {
			t.Error("found a nil address")
		}
	})
	t.Run("MACsFor sorted", func(t *testing.T) {
		got := tab.MACsFor(netip.MustParseAddr("10.0.0.2"))
		want := []net.HardwareAddr{mustMAC(t, "02:00:00:00:00:0a"), mustMAC(t, "02:00:00:00:00:0b")}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("MACsFor = %v, want %v", got, want)
		}
		got[0][0] = 0xff // the caller owns the result
		if again := tab.MACsFor(netip.MustParseAddr("10.0.0.2")); again[0][0] != 0x02 {
			t.Error("modifying MACsFor's result changed the table")
		}
	})
	t.Run("MACsFor IPv4-mapped", func(t *testing.T) {
		if got := tab.MACsFor(netip.MustParseAddr("::ffff:10.0.0.1")); len(got) != 1 {
			t.Errorf("MACsFor(::ffff:10.0.0.1) = %v, want one MAC", got)
		}
	})
	t.Run("MACsFor unknown", func(t *testing.T) {
		if got := tab.MACsFor(netip.MustParseAddr("10.0.0.9")); got != nil {
			t.Errorf("MACsFor = %v, want nil", got)
		}
		if got := tab.MACsFor(netip.Addr{}); got != nil {
			t.Errorf("MACsFor(zero Addr) = %v, want nil", got)
		}
	})
}

func TestNilTable(t *testing.T) {
	var tab *Table
	if _, ok := tab.Lookup(mustMAC(t, "00:11:22:33:44:55")); ok {
		t.Error("nil table found a MAC")
	}
	if got := tab.MACsFor(netip.MustParseAddr("10.0.0.1")); got != nil {
		t.Errorf("nil table MACsFor = %v", got)
	}
	if tab.Len() != 0 {
		t.Errorf("nil table Len = %d", tab.Len())
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "ethers")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte("00:11:22:33:44:55 10.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("\n00:11:22:33:44:55 node1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		want    string // substring of the error; "" for success
		notExst bool
	}{
		{"good", good, "", false},
		{"parse error names path and line", bad, bad + ": line 2: ", false},
		{"missing file", filepath.Join(dir, "nope"), filepath.Join(dir, "nope"), true},
		{"directory", dir, dir, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Load(tt.path)
			if tt.want == "" {
				if err != nil || tab.Len() != 1 {
					t.Fatalf("Load = %v entries, %v", tab.Len(), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error %v, want it to contain %q", err, tt.want)
			}
			if tt.notExst && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %v does not wrap fs.ErrNotExist", err)
			}
		})
	}
}
