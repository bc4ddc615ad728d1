package main

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

// lockedBuf is a bytes.Buffer safe for the writer goroutine and the test.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestAsyncWriter: lines come out complete and in order, Close writes all
// that was queued, and writes after Close still arrive.
func TestAsyncWriter(t *testing.T) {
	var out lockedBuf
	a := newAsyncWriter(&out)
	var want bytes.Buffer
	buf := make([]byte, 0, 64)
	for i := range 10000 {
		buf = fmt.Appendf(buf[:0], "line %d\n", i) // reused, as slog does
		a.Write(buf)
		want.Write(buf)
	}
	a.Close()
	a.Write([]byte("after close\n"))
	want.WriteString("after close\n")
	if out.b.String() != want.String() {
		t.Fatalf("output differs: %d bytes, want %d", out.b.Len(), want.Len())
	}
}
