package testenv

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The small helpers many packages' tests need, kept once here.

// Clock is a settable time source, safe for concurrent use: the code under
// test reads Now while the test moves it with Advance.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a Clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Buffer is a bytes.Buffer safe for a writer goroutine (a daemon's log, a
// subprocess's output) and the test reading it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is what was written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// WriteFile writes content to path (0644), creating its directory, and
// fails the test on error.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Inventory is the inventory the catalog's and the e2e tests share: two
// nodes ethers does not know, C0A80105 (a compute node, one MAC, a var)
// and inst-6 at 192.168.1.6 (two MACs, its own template tmpl, no root).
func Inventory(tmpl string) string {
	return `[node "C0A80105"]
mac = 52:54:00:00:00:05
hostname = n5
var.role = compute

[node "inst-6"]
ip = 192.168.1.6
mac = 52:54:00:00:00:06, 52:54:00:00:00:16
hostname = inst-6
template = ` + tmpl + `
provision = false
var.suite = bookworm
`
}
