package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestNilMetricsRecordsNothing: a daemon without metrics_listen passes a
// nil *Metrics everywhere, so every recording method must accept a nil
// receiver. The methods are found by reflection, so one added later
// without its nil check fails here.
func TestNilMetricsRecordsNothing(t *testing.T) {
	notRecorders := map[string]bool{"Registry": true, "Handler": true, "Serve": true}
	typ := reflect.TypeOf((*Metrics)(nil))
	called := 0
	for i := range typ.NumMethod() {
		meth := typ.Method(i)
		if notRecorders[meth.Name] {
			continue
		}
		if meth.Type.NumOut() != 0 {
			t.Errorf("%s returns something; recording methods return nothing (add it to notRecorders if it is not one)", meth.Name)
			continue
		}
		args := []reflect.Value{reflect.Zero(typ)} // the nil receiver
		for j := 1; j < meth.Type.NumIn(); j++ {
			args = append(args, reflect.Zero(meth.Type.In(j)))
		}
		t.Run(meth.Name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("(*Metrics)(nil).%s panicked: %v", meth.Name, r)
				}
			}()
			meth.Func.Call(args)
		})
		called++
	}
	if called < 7 {
		t.Errorf("only %d recording methods found; the reflection lost some", called)
	}
}

func TestCounters(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name   string
		record func(m *Metrics)
		metric string // as in the exposition, with labels
		want   float64
	}{
		{"lookup served", func(m *Metrics) { m.Lookup("pxelinux", ResultServed); m.Lookup("pxelinux", ResultServed) }, `pxebootfs_lookups_total{loader="pxelinux",result="served"}`, 2},
		{"lookup not found is no error", func(m *Metrics) { m.Lookup("pxelinux", ResultNotFound) }, `pxebootfs_errors_total{kind="serve"}`, 0},
		{"lookup error", func(m *Metrics) { m.Lookup("grub", ResultError) }, `pxebootfs_errors_total{kind="serve"}`, 1},
		{"read", func(m *Metrics) { m.Read("grub", KindStatic, ResultOK) }, `pxebootfs_reads_total{kind="static",loader="grub",result="ok"}`, 1},
		{"read error", func(m *Metrics) { m.Read("pxelinux", KindNode, ResultError) }, `pxebootfs_reads_total{kind="node",loader="pxelinux",result="error"}`, 1},
		{"renders", func(m *Metrics) { m.Render("pxelinux", nil); m.Render("pxelinux", boom) }, `pxebootfs_renders_total{loader="pxelinux"}`, 2},
		{"render error", func(m *Metrics) { m.Render("grub", boom) }, `pxebootfs_errors_total{kind="render"}`, 1},
		{"provisioned", func(m *Metrics) { m.Provisioned(30*time.Millisecond, nil) }, `pxebootfs_provision_duration_seconds_bucket{result="ok",le="0.05"}`, 1},
		{"provisioned too slow for bucket", func(m *Metrics) { m.Provisioned(time.Second, nil) }, `pxebootfs_provision_duration_seconds_bucket{result="ok",le="0.5"}`, 0},
		{"provision error", func(m *Metrics) { m.Provisioned(time.Second, boom) }, `pxebootfs_errors_total{kind="provision"}`, 1},
		{"reset", func(m *Metrics) { m.Reset("reset_on_boot", time.Second, nil) }, `pxebootfs_resets_total{reason="reset_on_boot",result="ok"}`, 1},
		{"release purge", func(m *Metrics) { m.Release(true, nil) }, `pxebootfs_releases_total{purge="true",result="ok"}`, 1},
		{"reload error", func(m *Metrics) { m.Reload("command", boom) }, `pxebootfs_reloads_total{result="error",trigger="command"}`, 1},
		{"reload error kind", func(m *Metrics) { m.Reload("signal", boom) }, `pxebootfs_errors_total{kind="reload"}`, 1},
		{"series exist from the start", func(m *Metrics) {}, `pxebootfs_reads_total{kind="node",loader="grub",result="not_found"}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New("pxelinux", "grub")
			tt.record(m)
			got, ok := scrapeValue(t, m, tt.metric)
			if !ok {
				t.Fatalf("%s not in the scrape", tt.metric)
			}
			if got != tt.want {
				t.Errorf("%s = %v, want %v", tt.metric, got, tt.want)
			}
		})
	}
}

func TestNodeGauges(t *testing.T) {
	tests := []struct {
		name  string
		count CountNodes
		want  map[string]float64 // nil: the gauges are absent
	}{
		{"counted", func(context.Context) (NodeCounts, bool) { return NodeCounts{Known: 3, Mounted: 2, Exported: 1}, true },
			map[string]float64{"pxebootfs_nodes_known": 3, "pxebootfs_nodes_mounted": 2, "pxebootfs_nodes_exported": 1}},
		{"unknown", func(context.Context) (NodeCounts, bool) { return NodeCounts{}, false }, nil},
		{"config-only mode", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			if tt.count != nil {
				m.RegisterNodes(tt.count)
			}
			for _, name := range []string{"pxebootfs_nodes_known", "pxebootfs_nodes_mounted", "pxebootfs_nodes_exported"} {
				got, ok := scrapeValue(t, m, name)
				if tt.want == nil {
					if ok {
						t.Errorf("%s = %v, want absent", name, got)
					}
					continue
				}
				if !ok || got != tt.want[name] {
					t.Errorf("%s = %v (present %v), want %v", name, got, ok, tt.want[name])
				}
			}
		})
	}
	// Series exist from the start for the loaders named, and only those.
	if n, err := testutil.GatherAndCount(New("pxelinux", "grub").Registry(), "pxebootfs_lookups_total"); err != nil || n != 6 {
		t.Errorf("lookups series of two loaders = %d, %v; want 6", n, err)
	}
	if n, err := testutil.GatherAndCount(New("pxelinux").Registry(), "pxebootfs_lookups_total"); err != nil || n != 3 {
		t.Errorf("lookups series of pxelinux alone = %d, %v; want 3", n, err)
	}
}

func TestServe(t *testing.T) {
	m := New()
	m.Lookup("pxelinux", ResultServed)
	s, err := m.Serve("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	body := get(t, "http://"+s.Addr().String()+"/metrics")
	for _, want := range []string{`pxebootfs_lookups_total{loader="pxelinux",result="served"} 1`, "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if !strings.Contains(get(t, "http://"+s.Addr().String()+"/"), "/metrics") {
		t.Error("/ does not point to /metrics")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + s.Addr().String() + "/metrics"); err == nil {
		t.Error("still serving after Close")
	}
}

func TestServeBadAddress(t *testing.T) {
	if _, err := New().Serve("127.0.0.1:99999", nil); err == nil || !strings.Contains(err.Error(), "127.0.0.1:99999") {
		t.Errorf("Serve on a bad address = %v, want an error naming it", err)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}

// scrapeValue returns a sample's value from the text exposition, found by
// its name and labels exactly as printed.
func scrapeValue(t *testing.T, m *Metrics, series string) (float64, bool) {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			return f, true
		}
	}
	return 0, false
}

func TestInstallMetrics(t *testing.T) {
	m := New()
	m.RegisterInstalls(func() InstallCounts {
		return InstallCounts{ByState: map[string]int{"install": 2, "installed": 5}, Loops: 1}
	})
	m.InstallCallback("done", 200)
	m.InstallCallback("done", 200)
	m.InstallCallback("started", 403)
	want := `
# HELP pxebootfs_install_callbacks_total Installers' callbacks by action (started, done, failed) and HTTP status code.
# TYPE pxebootfs_install_callbacks_total counter
pxebootfs_install_callbacks_total{action="done",code="200"} 2
pxebootfs_install_callbacks_total{action="started",code="403"} 1
# HELP pxebootfs_install_loops Nodes in install mode whose install config was served more than install_max_boots times without progress: a possible install loop.
# TYPE pxebootfs_install_loops gauge
pxebootfs_install_loops 1
# HELP pxebootfs_install_nodes Nodes by install state.
# TYPE pxebootfs_install_nodes gauge
pxebootfs_install_nodes{state="install"} 2
pxebootfs_install_nodes{state="installed"} 5
pxebootfs_install_nodes{state="installing"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"pxebootfs_install_callbacks_total", "pxebootfs_install_loops", "pxebootfs_install_nodes"); err != nil {
		t.Error(err)
	}
	var nilM *Metrics
	nilM.InstallCallback("done", 200) // no panic
	nilM.RegisterInstalls(nil)
}

func TestRootGauges(t *testing.T) {
	m := New()
	m.RegisterRoots(func() ([]RootGeneration, bool) {
		return []RootGeneration{
			{Root: "os", Generation: "aaaaaaaaaaaa", Current: true, Nodes: 2, Bytes: 100},
			{Root: "os", Generation: "bbbbbbbbbbbb", Nodes: 1, Bytes: 50},
		}, true
	})
	for metric, want := range map[string]float64{
		`pxebootfs_root_nodes{generation="bbbbbbbbbbbb",root="os"}`:   1,
		`pxebootfs_root_current{generation="aaaaaaaaaaaa",root="os"}`: 1,
		`pxebootfs_root_generations{root="os"}`:                       2,
		`pxebootfs_root_bytes{root="os"}`:                             150,
	} {
		if got, ok := scrapeValue(t, m, metric); !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", metric, got, ok, want)
		}
	}
}
