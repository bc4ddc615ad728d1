package fs

import "testing"

// TestVersionIno: one name with one content is one inode; another name
// (a case variant, GRUB's dotted and hex names of one node) or another
// content is another inode.
func TestVersionIno(t *testing.T) {
	tests := []struct {
		name       string
		a, b       string // names
		aData      string
		bData      string
		wantShared bool
	}{
		{"same name, same content", "C0A80102", "C0A80102", "x", "x", true},
		{"same name, other content", "C0A80102", "C0A80102", "x", "y", false},
		{"case variants", "C0A80102", "c0a80102", "x", "x", false},
		{"GRUB hex and dotted", "grub.cfg-C0A80102", "grub.cfg-192.168.1.2", "x", "x", false},
		{"name and content do not run together", "ab", "a", "", "b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := versionIno(tt.a, []byte(tt.aData)), versionIno(tt.b, []byte(tt.bData))
			if (a == b) != tt.wantShared {
				t.Errorf("versionIno(%q, %q) = %x, versionIno(%q, %q) = %x; shared = %v, want %v", tt.a, tt.aData, a, tt.b, tt.bData, b, a == b, tt.wantShared)
			}
			if a&^lowMask != tagFile || a <= byIPIno {
				t.Errorf("versionIno %x is outside the file space", a)
			}
		})
	}
}
