package nfsexport

import (
	"sync"
	"testing"
	"time"
)

// TestBatcherHandsOver: a writer writes one round and returns; the edits
// that arrived meanwhile are written by the oldest of them, in one round.
// Every edit is in exactly one round, and none waits for rounds after its
// own.
func TestBatcherHandsOver(t *testing.T) {
	var b batcher[int]
	release := make(chan struct{})
	var mu sync.Mutex
	var rounds [][]int
	run := func(batch []int) []error {
		<-release
		mu.Lock()
		rounds = append(rounds, append([]int(nil), batch...))
		mu.Unlock()
		return make([]error, len(batch))
	}
	returned := make(chan int, 10)
	call := func(e int) {
		go func() {
			if err := b.do(e, run); err != nil {
				t.Error(err)
			}
			returned <- e
		}()
	}
	call(0) // the writer of round 1, blocked in run
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.busy })
	for i := 1; i <= 3; i++ {
		call(i)
	}
	waitFor(t, func() bool { return b.queuedLen() == 3 })
	release <- struct{}{} // round 1: [0]
	if got := <-returned; got != 0 {
		t.Fatalf("%d returned first, want the writer of round 1", got)
	}
	// Round 2 is being written by 1, 2 and 3's oldest; more arrive.
	waitFor(t, func() bool { return b.queuedLen() == 0 })
	call(4)
	waitFor(t, func() bool { return b.queuedLen() == 1 })
	release <- struct{}{} // round 2: [1 2 3]
	for range 3 {
		if got := <-returned; got == 4 {
			t.Fatal("4 returned before its round")
		}
	}
	release <- struct{}{} // round 3: [4]
	if got := <-returned; got != 4 {
		t.Fatalf("returned %d", got)
	}
	want := [][]int{{0}, {1, 2, 3}, {4}}
	if len(rounds) != len(want) {
		t.Fatalf("rounds %v, want %v", rounds, want)
	}
	for i := range want {
		if len(rounds[i]) != len(want[i]) {
			t.Fatalf("rounds %v, want %v", rounds, want)
		}
	}
	if b.busy || b.queuedLen() != 0 {
		t.Fatal("batcher not idle at the end")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
