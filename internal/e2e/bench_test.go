package e2e

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// BenchmarkTFTPFetch fetches one node's config through tftpd-hpa from the
// pxebootfs mount and the same bytes as a static file from a plain
// directory of the same tftpd, in the same run, and reports both rates and
// their ratio (pxebootfs / static; 1.0 means no overhead). Each iteration
// fetches once from each, interleaved, so machine noise hits both alike.
//
//	go test -run '^$' -bench TFTPFetch -benchtime 2000x ./e2e
func BenchmarkTFTPFetch(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(map[int]string{1: "sequential", 16: "16clients"}[clients], func(b *testing.B) {
			benchFetch(b, clients)
		})
	}
}

func benchFetch(b *testing.B, clients int) {
	s := newSite(b, "")
	s.start()
	want := s.render("C0A80102")
	plain := filepath.Join(s.tftpRoot, "plain")
	if err := os.MkdirAll(plain, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plain, "C0A80102"), want, 0o644); err != nil {
		b.Fatal(err)
	}
	addr := testenv.StartTFTPD(b, s.tftpRoot)
	var fuseTime, staticTime atomic.Int64
	var errs atomic.Int64
	fetch := func(name string, acc *atomic.Int64) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := testenv.Get(ctx, addr, name, testenv.GetOptions{Tsize: true, Blksize: 1428})
		cancel()
		acc.Add(int64(time.Since(start)))
		if err != nil || len(res.Data) != len(want) {
			errs.Add(1)
		}
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	var next atomic.Int64
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				fetch("pxelinux.cfg/C0A80102", &fuseTime)
				fetch("plain/C0A80102", &staticTime)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if n := errs.Load(); n > 0 {
		b.Fatalf("%d fetches failed", n)
	}
	// Rates are per client-second of fetching: total fetches over the time
	// the clients spent on that kind, times the number of clients.
	fuseRate := float64(b.N) / time.Duration(fuseTime.Load()).Seconds() * float64(clients)
	staticRate := float64(b.N) / time.Duration(staticTime.Load()).Seconds() * float64(clients)
	b.ReportMetric(fuseRate, "pxebootfs-fetches/s")
	b.ReportMetric(staticRate, "static-fetches/s")
	b.ReportMetric(fuseRate/staticRate, "ratio")
	b.ReportMetric(0, "ns/op")
}
