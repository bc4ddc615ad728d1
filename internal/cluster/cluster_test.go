package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

func open(t *testing.T, e *testenv.Etcd, name, addr string) *Cluster {
	t.Helper()
	c, err := Open(context.Background(), Options{Endpoints: e.Endpoints, Server: name, Address: addr, Prefix: "/test/",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond (the other server learns through its watch).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s: not within 10 s", what)
		}
	}
}

// TestClaimRace: two servers claim the same new node at the same instant,
// 200 times: each node gets exactly one owner, and both servers are told
// the same one.
func TestClaimRace(t *testing.T) {
	e := testenv.StartEtcd(t, 3)
	a, b := open(t, e, "a", "192.0.2.1"), open(t, e, "b", "192.0.2.2")
	wins := map[string]int{}
	for i := range 200 {
		id := node.FromUint32(0x0A000000 + uint32(i))
		var start, done sync.WaitGroup
		start.Add(1)
		got := make([]Owner, 2)
		errs := make([]error, 2)
		for k, c := range []*Cluster{a, b} {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				got[k], errs[k] = c.Claim(context.Background(), id)
			}()
		}
		start.Done()
		done.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if got[0].Server != got[1].Server {
			t.Fatalf("node %s: a was told %q owns it, b %q", id, got[0].Server, got[1].Server)
		}
		wins[got[0].Server]++
	}
	t.Logf("claims won: %v", wins)
	if wins["a"]+wins["b"] != 200 {
		t.Errorf("wins %v", wins)
	}
	// Both servers' memory agrees with etcd for every node.
	waitFor(t, "b sees every owner", func() bool {
		for i := range 200 {
			id := node.FromUint32(0x0A000000 + uint32(i))
			oa, _ := a.Owner(id)
			ob, ok := b.Owner(id)
			if !ok || oa != ob {
				return false
			}
		}
		return true
	})
	if o, _ := b.Owner(node.FromUint32(0x0A000000)); o.Address == "" {
		t.Errorf("owner %+v without the address its server registered", o)
	}
}

// TestEtcdOutage: losing one member of three changes nothing; losing all,
// known owners are still answered from memory and a claim fails at once
// with ErrUnavailable; with etcd back, claims work and what changed
// meanwhile is seen.
func TestEtcdOutage(t *testing.T) {
	e := testenv.StartEtcd(t, 3)
	var ups []bool
	var mu sync.Mutex
	c, err := Open(context.Background(), Options{Endpoints: e.Endpoints, Server: "a", Address: "192.0.2.1", Prefix: "/test/", Timeout: time.Second,
		OnUp: func(up bool) { mu.Lock(); ups = append(ups, up); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	known := node.FromUint32(0x0A000001)
	if o, err := c.Claim(context.Background(), known); err != nil || o.Server != "a" {
		t.Fatalf("claim: %+v, %v", o, err)
	}

	e.Stop(t, 0)
	for i := range 5 {
		id := node.FromUint32(0x0A000100 + uint32(i))
		if o, err := c.Claim(context.Background(), id); err != nil || o.Server != "a" {
			t.Fatalf("with one member of three down, claim %s: %+v, %v", id, o, err)
		}
	}
	e.Stop(t, 1)
	e.Stop(t, 2)
	start := time.Now()
	_, err = c.Claim(context.Background(), node.FromUint32(0x0A000200))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("claim with etcd down: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a claim with etcd down took %s", d)
	}
	if c.Up() {
		t.Error("Up() with etcd down")
	}
	if o, ok := c.Owner(known); !ok || o.Server != "a" {
		t.Errorf("known node's owner with etcd down: %+v, %v", o, ok)
	}

	for i := range 3 {
		e.Start(t, i)
	}
	e.WaitHealthy(t)
	// Another server claims a node while this one is reconnecting.
	other := open(t, e, "b", "192.0.2.2")
	late := node.FromUint32(0x0A000300)
	if _, err := other.Claim(context.Background(), late); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b's claim made while it was cut off", func() bool {
		o, ok := c.Owner(late)
		return ok && o.Server == "b"
	})
	if o, err := c.Claim(context.Background(), node.FromUint32(0x0A000200)); err != nil || o.Server != "a" {
		t.Fatalf("claim after etcd came back: %+v, %v", o, err)
	}
	if !c.Up() {
		t.Error("not Up() after etcd came back")
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(ups) != "[true false true]" {
		t.Errorf("OnUp calls %v, want [true false true]", ups)
	}
}

// TestPublishAndMove: the owner's root record reaches the other server;
// a move hands the node over, drops the old record, and the old owner can
// no longer publish.
func TestPublishAndMove(t *testing.T) {
	e := testenv.StartEtcd(t, 1)
	a, b := open(t, e, "a", "192.0.2.1"), open(t, e, "b", "192.0.2.2")
	id := node.FromUint32(0x0A000001)
	if _, err := a.Claim(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	want := NodeRoot{FSID: 10001, Root: "debian", Gen: "0123456789ab"}
	if err := a.Publish(context.Background(), id, want); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b sees a's root record", func() bool { r, ok := b.Root(id); return ok && r == want })
	if err := b.Publish(context.Background(), id, NodeRoot{FSID: 1}); err == nil {
		t.Error("b published a node a owns")
	}
	if _, err := b.Move(context.Background(), id, "nosuch"); err == nil {
		t.Error("moved to a server that never registered")
	}
	if prev, err := b.Move(context.Background(), id, "b"); err != nil || prev != "a" {
		t.Fatalf("move: %q, %v", prev, err)
	}
	waitFor(t, "a sees the move", func() bool {
		o, _ := a.Owner(id)
		_, hasRoot := a.Root(id)
		return o.Server == "b" && !hasRoot
	})
	if err := a.Publish(context.Background(), id, want); err == nil {
		t.Error("the old owner published after the move")
	}
}
