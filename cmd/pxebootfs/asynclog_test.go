package main

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// TestAsyncWriter: lines come out complete and in order, Close writes all
// that was queued, and writes after Close still arrive.
func TestAsyncWriter(t *testing.T) {
	var out testenv.Buffer
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
	if out.String() != want.String() {
		t.Fatalf("output differs: %d bytes, want %d", len(out.String()), want.Len())
	}
}
