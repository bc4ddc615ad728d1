package e2e

import (
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// BenchmarkColdProvision measures the first fetch of new nodes through
// tftpd-hpa in full mode (allocate fsid, mount overlay, exportfs, render)
// beside a warm fetch of an already provisioned node, in the same run.
//
//	go test -run '^$' -bench ColdProvision -benchtime 200x ./e2e
func BenchmarkColdProvision(b *testing.B) {
	f := newFullSite(b, "max_nodes = 65536\n")
	f.start()
	addr := testenv.StartTFTPD(b, f.tftpRoot)
	warmName, _ := hexNode(0)
	if _, err := fetch(b, addr, warmName); err != nil {
		b.Fatal(err)
	}
	cold := make([]time.Duration, 0, b.N)
	warm := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		name, _ := hexNode(i)
		start := time.Now()
		if _, err := fetch(b, addr, name); err != nil {
			b.Fatal(err)
		}
		cold = append(cold, time.Since(start))
		start = time.Now()
		if _, err := fetch(b, addr, warmName); err != nil {
			b.Fatal(err)
		}
		warm = append(warm, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(cold, 50)), "cold-p50-ms")
	b.ReportMetric(ms(percentile(cold, 99)), "cold-p99-ms")
	b.ReportMetric(ms(percentile(warm, 50)), "warm-p50-ms")
	b.ReportMetric(ms(percentile(warm, 99)), "warm-p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkStorm1000 fetches 1,000 distinct new nodes through tftpd-hpa
// with 64 concurrent clients, then counts mounts and exports.
//
//	go test -run '^$' -bench Storm1000 -benchtime 1x ./e2e
func BenchmarkStorm1000(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f := newFullSite(b, "max_nodes = 2000\n")
		f.start()
		addr := testenv.StartTFTPD(b, f.tftpRoot)
		b.StartTimer()
		start := time.Now()
		served, failed := fetchStorm(b, addr, 1000, 64)
		total := time.Since(start)
		b.StopTimer()
		exps, mounts := f.exports(b), f.overlayMounts(b)
		ok := 0
		for _, name := range served {
			p := filepath.Join(f.nodes, name)
			if _, e := exps[p]; e && mounts[p] == 1 {
				ok++
			}
		}
		b.ReportMetric(total.Seconds(), "storm-s")
		b.ReportMetric(float64(failed), "errors")
		b.ReportMetric(float64(len(mounts)), "mounts")
		b.ReportMetric(float64(len(exps)), "exports")
		b.ReportMetric(float64(ok), "served-with-root")
		b.ReportMetric(0, "ns/op")
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
