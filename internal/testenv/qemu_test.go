package testenv

import "testing"

// The console is matched without escape sequences: one inside a line
// (a cursor move pxelinux wrote mid-line) once hid a marker.
func TestConsoleEscapes(t *testing.T) {
	raw := "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\r\nP\rXEBOOTFS-BIOS node=C0A80102 mac=52:54:00:12:34:56\x1b[25;50H\x1b[25;51H ip=192.168.1.2\r\n"
	want := "SeaBIOS\nPXEBOOTFS-BIOS node=C0A80102 mac=52:54:00:12:34:56 ip=192.168.1.2\n"
	if got := cleanConsole(raw); got != want {
		t.Errorf("stripped %q, want %q", got, want)
	}
}
