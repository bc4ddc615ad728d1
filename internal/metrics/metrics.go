// Package metrics counts what pxebootfs does, for Prometheus: names
// resolved and files served by result, template renders, provisioning
// latency, resets, reloads, errors by kind, and how many nodes are known,
// mounted and exported. It also serves them over HTTP (metrics_listen).
//
// Everything is registered in a registry of its own, not the global one, so
// that tests can make as many as they like. A nil *Metrics is valid and
// records nothing, so code that may run without metrics needs no checks.
//
// # Metrics
//
//	pxebootfs_lookups_total{result}          name resolutions (FUSE lookup, stat, open): served, not_found, error
//	pxebootfs_reads_total{kind,result}       files opened to be read (one per TFTP transfer): kind node or static
//	pxebootfs_renders_total                  template renders (stat and open of node names)
//	pxebootfs_provision_duration_seconds     histogram of first-boot provisioning runs, by result
//	pxebootfs_resets_total{reason,result}    resets: reason admin or reset_on_boot
//	pxebootfs_releases_total{purge,result}   releases by the admin
//	pxebootfs_reloads_total{trigger,result}  config reloads: trigger signal or command
//	pxebootfs_errors_total{kind}             render, serve, provision, reset, release, reload
//	pxebootfs_nodes_known                    nodes in the registry (full mode)
//	pxebootfs_nodes_mounted                  of them, with their overlay mounted now
//	pxebootfs_nodes_exported                 of them, exported now
//	pxebootfs_install_callbacks_total{action,code}  installers' callbacks by action and HTTP status
//	pxebootfs_install_nodes{state}           nodes by install state (install, installing, installed)
//	pxebootfs_install_loops                  nodes flagged as a possible install loop
//
// plus the client library's standard go_* and process_* metrics.
package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "pxebootfs"

// Results and kinds used as label values.
const (
	ResultServed   = "served"
	ResultNotFound = "not_found"
	ResultOK       = "ok"
	ResultError    = "error"

	KindNode   = "node"
	KindStatic = "static"
)

// NodeCounts is what the nodes gauges show, computed at scrape time.
type NodeCounts struct {
	Known, Mounted, Exported int
}

// CountNodes returns the current NodeCounts; ok false leaves the gauges out
// of the scrape (config-only mode, or the counts could not be had).
type CountNodes func(ctx context.Context) (c NodeCounts, ok bool)

// Metrics holds the collectors. Its methods are safe for concurrent use and
// do nothing on a nil *Metrics.
type Metrics struct {
	reg       *prometheus.Registry
	lookups   *prometheus.CounterVec
	reads     *prometheus.CounterVec
	renders   *prometheus.CounterVec
	provision *prometheus.HistogramVec
	resets    *prometheus.CounterVec
	releases  *prometheus.CounterVec
	reloads   *prometheus.CounterVec
	errors    *prometheus.CounterVec
	callbacks *prometheus.CounterVec
}

// Error kinds, the label values of pxebootfs_errors_total.
var errorKinds = []string{"render", "serve", "provision", "reset", "release", "reload"}

// New makes the collectors and registers them, with the Go and process
// collectors, in a new registry. loaders are the values of the loader label
// (the mounted loaders' names), whose series exist from the start. The
// gauges computed at scrape time from other parts of the daemon are added by
// the Register methods once those parts exist.
func New(loaders ...string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "lookups_total",
			Help: "Names resolved under pxelinux.cfg (FUSE lookup, stat and open), by result: served, not_found or error.",
		}, []string{"loader", "result"}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reads_total",
			Help: "Files opened for reading (one per TFTP transfer), by kind (node, static) and result (ok, not_found, error).",
		}, []string{"loader", "kind", "result"}),
		renders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "renders_total",
			Help: "Node configs rendered from the template, by loader (a stat the kernel has not cached, and every open, of a node name renders).",
		}, []string{"loader"}),
		provision: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "provision_duration_seconds",
			Help:    "Time to give a node its root (registry, overlay mount, export), per provisioning run, by result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"result"}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "resets_total",
			Help: "Node roots reset, by reason (admin, reset_on_boot) and result.",
		}, []string{"reason", "result"}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "releases_total",
			Help: "Node roots released by the admin, by purge (true, false) and result.",
		}, []string{"purge", "result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reloads_total",
			Help: "Config reloads asked for, by trigger (signal, command) and result (ok, error).",
		}, []string{"trigger", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "errors_total",
			Help: "Errors by kind: render, serve, provision, reset, release, reload.",
		}, []string{"kind"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "install_callbacks_total",
			Help: "Installers' callbacks by action (started, done, failed) and HTTP status code.",
		}, []string{"action", "code"}),
	}
	// Every series exists from the start, so a rate() over a fresh daemon
	// and an alert on "errors > 0" both work.
	for _, l := range loaders {
		m.renders.WithLabelValues(l)
		for _, r := range []string{ResultServed, ResultNotFound, ResultError} {
			m.lookups.WithLabelValues(l, r)
		}
		for _, k := range []string{KindNode, KindStatic} {
			for _, r := range []string{ResultOK, ResultNotFound, ResultError} {
				m.reads.WithLabelValues(l, k, r)
			}
		}
	}
	for _, r := range []string{ResultOK, ResultError} {
		m.provision.WithLabelValues(r)
		for _, t := range []string{"signal", "command"} {
			m.reloads.WithLabelValues(t, r)
		}
	}
	for _, k := range errorKinds {
		m.errors.WithLabelValues(k)
	}
	m.reg.MustRegister(m.lookups, m.reads, m.renders, m.provision, m.resets, m.releases, m.reloads, m.errors, m.callbacks,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// RegisterNodes adds the node gauges (full mode), computed from count when
// scraped.
func (m *Metrics) RegisterNodes(count CountNodes) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&nodeCollector{count: count})
}

// Registry is where the collectors are registered, for the HTTP handler and
// for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func result(err error) string {
	if err != nil {
		return ResultError
	}
	return ResultOK
}

// Lookup counts a name resolution under loader's mount; result is
// ResultServed, ResultNotFound or ResultError.
func (m *Metrics) Lookup(loader, result string) {
	if m == nil {
		return
	}
	m.lookups.WithLabelValues(loader, result).Inc()
	if result == ResultError {
		m.errors.WithLabelValues("serve").Inc()
	}
}

// Read counts a file opened for reading; kind is KindNode or KindStatic,
// result ResultOK, ResultNotFound or ResultError.
func (m *Metrics) Read(loader, kind, result string) {
	if m == nil {
		return
	}
	m.reads.WithLabelValues(loader, kind, result).Inc()
	if result == ResultError {
		m.errors.WithLabelValues("serve").Inc()
	}
}

// Render counts a template render.
func (m *Metrics) Render(loader string, err error) {
	if m == nil {
		return
	}
	m.renders.WithLabelValues(loader).Inc()
	if err != nil {
		m.errors.WithLabelValues("render").Inc()
	}
}

// Provisioned observes a provisioning run (provision.Metrics).
func (m *Metrics) Provisioned(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.provision.WithLabelValues(result(err)).Observe(d.Seconds())
	if err != nil {
		m.errors.WithLabelValues("provision").Inc()
	}
}

// Reset counts a reset (provision.Metrics).
func (m *Metrics) Reset(reason string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.resets.WithLabelValues(reason, result(err)).Inc()
	if err != nil {
		m.errors.WithLabelValues("reset").Inc()
	}
}

// Release counts an admin's release.
func (m *Metrics) Release(purge bool, err error) {
	if m == nil {
		return
	}
	p := "false"
	if purge {
		p = "true"
	}
	m.releases.WithLabelValues(p, result(err)).Inc()
	if err != nil {
		m.errors.WithLabelValues("release").Inc()
	}
}

// Reload counts a config reload; trigger is "signal" or "command".
func (m *Metrics) Reload(trigger string, err error) {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues(trigger, result(err)).Inc()
	if err != nil {
		m.errors.WithLabelValues("reload").Inc()
	}
}

// nodeCollector computes the node gauges when scraped: the numbers live in
// the registry, the mount table and the exporter, and copying them into
// gauges on every change would be one more thing to get wrong.
type nodeCollector struct {
	count CountNodes
}

// scrapeTimeout bounds the node count (it may run exportfs).
const scrapeTimeout = 10 * time.Second

var (
	descKnown    = prometheus.NewDesc(namespace+"_nodes_known", "Nodes in the registry.", nil, nil)
	descMounted  = prometheus.NewDesc(namespace+"_nodes_mounted", "Known nodes whose overlay root is mounted.", nil, nil)
	descExported = prometheus.NewDesc(namespace+"_nodes_exported", "Known nodes whose root is exported.", nil, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descKnown
	ch <- descMounted
	ch <- descExported
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	n, ok := c.count(ctx)
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(descKnown, prometheus.GaugeValue, float64(n.Known))
	ch <- prometheus.MustNewConstMetric(descMounted, prometheus.GaugeValue, float64(n.Mounted))
	ch <- prometheus.MustNewConstMetric(descExported, prometheus.GaugeValue, float64(n.Exported))
}

// ImageState is what the image gauges show, read from the image index at
// scrape time: imports run in their own processes and leave their counts
// there.
type ImageState struct {
	Current                              map[string]string // image -> current version
	Versions                             map[string]int    // image -> versions kept
	Imported, Unchanged, Failed, Fetched int64
}

// ReadImages reads the image state; ok false when there is none to show.
type ReadImages func() (ImageState, bool)

// RegisterImages adds the image metrics, computed from read when scraped.
func (m *Metrics) RegisterImages(read ReadImages) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&imageCollector{read: read})
}

var (
	descImageCurrent  = prometheus.NewDesc(namespace+"_image_current", "1 for the current version of each boot image.", []string{"image", "version"}, nil)
	descImageVersions = prometheus.NewDesc(namespace+"_image_versions", "Versions kept of each boot image.", []string{"image"}, nil)
	descImageImports  = prometheus.NewDesc(namespace+"_image_imports_total", "Image imports by result: imported (a new version), unchanged (identical bytes), failed.", []string{"result"}, nil)
	descImageFetched  = prometheus.NewDesc(namespace+"_image_fetched_bytes_total", "Bytes downloaded over HTTP by image imports.", nil, nil)
)

type imageCollector struct{ read ReadImages }

func (c *imageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descImageCurrent
	ch <- descImageVersions
	ch <- descImageImports
	ch <- descImageFetched
}

func (c *imageCollector) Collect(ch chan<- prometheus.Metric) {
	st, ok := c.read()
	if !ok {
		return
	}
	for name, v := range st.Current {
		ch <- prometheus.MustNewConstMetric(descImageCurrent, prometheus.GaugeValue, 1, name, v)
	}
	for name, n := range st.Versions {
		ch <- prometheus.MustNewConstMetric(descImageVersions, prometheus.GaugeValue, float64(n), name)
	}
	for r, n := range map[string]int64{"imported": st.Imported, "unchanged": st.Unchanged, "failed": st.Failed} {
		ch <- prometheus.MustNewConstMetric(descImageImports, prometheus.CounterValue, float64(n), r)
	}
	ch <- prometheus.MustNewConstMetric(descImageFetched, prometheus.CounterValue, float64(st.Fetched))
}

// RootGeneration is one root generation as the root gauges show it.
type RootGeneration struct {
	Root, Generation string
	Current          bool
	Nodes            int   // pinned to it
	Bytes            int64 // of its regular files
}

// RegisterRoots adds the root gauges (full mode), computed from read when
// scraped: nodes per generation, generations kept and their bytes.
func (m *Metrics) RegisterRoots(read func() ([]RootGeneration, bool)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&rootCollector{read: read})
}

var (
	descRootNodes       = prometheus.NewDesc(namespace+"_root_nodes", "Nodes pinned to each root generation (their layer was made over it).", []string{"root", "generation"}, nil)
	descRootCurrent     = prometheus.NewDesc(namespace+"_root_current", "1 for the current generation of each root.", []string{"root", "generation"}, nil)
	descRootGenerations = prometheus.NewDesc(namespace+"_root_generations", "Generations kept of each root.", []string{"root"}, nil)
	descRootBytes       = prometheus.NewDesc(namespace+"_root_bytes", "Bytes of the regular files of the generations kept of each root.", []string{"root"}, nil)
)

type rootCollector struct {
	read func() ([]RootGeneration, bool)
}

func (c *rootCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRootNodes
	ch <- descRootCurrent
	ch <- descRootGenerations
	ch <- descRootBytes
}

func (c *rootCollector) Collect(ch chan<- prometheus.Metric) {
	gens, ok := c.read()
	if !ok {
		return
	}
	kept, bytes := map[string]int{}, map[string]int64{}
	for _, g := range gens {
		ch <- prometheus.MustNewConstMetric(descRootNodes, prometheus.GaugeValue, float64(g.Nodes), g.Root, g.Generation)
		if g.Current {
			ch <- prometheus.MustNewConstMetric(descRootCurrent, prometheus.GaugeValue, 1, g.Root, g.Generation)
		}
		kept[g.Root]++
		bytes[g.Root] += g.Bytes
	}
	for r, n := range kept {
		ch <- prometheus.MustNewConstMetric(descRootGenerations, prometheus.GaugeValue, float64(n), r)
		ch <- prometheus.MustNewConstMetric(descRootBytes, prometheus.GaugeValue, float64(bytes[r]), r)
	}
}

// InstallCallback counts one installer callback.
func (m *Metrics) InstallCallback(action string, status int) {
	if m == nil {
		return
	}
	m.callbacks.WithLabelValues(action, strconv.Itoa(status)).Inc()
}

// InstallCounts is what the install gauges show.
type InstallCounts struct {
	ByState map[string]int // install, installing, installed
	Loops   int
}

// RegisterInstalls adds the install gauges, computed from count when
// scraped.
func (m *Metrics) RegisterInstalls(count func() InstallCounts) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&installCollector{count: count})
}

var (
	descInstallNodes = prometheus.NewDesc(namespace+"_install_nodes", "Nodes by install state.", []string{"state"}, nil)
	descInstallLoops = prometheus.NewDesc(namespace+"_install_loops", "Nodes in install mode whose install config was served more than install_max_boots times without progress: a possible install loop.", nil, nil)
)

type installCollector struct{ count func() InstallCounts }

func (c *installCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descInstallNodes
	ch <- descInstallLoops
}

func (c *installCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.count()
	for _, st := range []string{"install", "installing", "installed"} {
		ch <- prometheus.MustNewConstMetric(descInstallNodes, prometheus.GaugeValue, float64(n.ByState[st]), st)
	}
	ch <- prometheus.MustNewConstMetric(descInstallLoops, prometheus.GaugeValue, float64(n.Loops))
}

// RegisterNFSServer adds pxebootfs_nfs_server_up: 1 while the NFS server
// that serves the exports answers (up is asked at scrape time), 0 while it
// does not; exports then succeed and nodes cannot mount their roots.
func (m *Metrics) RegisterNFSServer(up func() bool) {
	m.registerUp("nfs_server_up", "1 while the NFS server that serves the node exports is running (export = exportfs: the kernel's nfsd and rpc.mountd), 0 while it is not.", up)
}

// RegisterCluster adds pxebootfs_cluster_up: 1 while etcd answers (up is
// asked at scrape time), 0 while it does not; the server then serves the
// nodes it knows and refuses new ones.
func (m *Metrics) RegisterCluster(up func() bool) {
	m.registerUp("cluster_up", "1 while the cluster's etcd answers, 0 while it does not: known nodes are served, new nodes are not claimed, install callbacks get 503.", up)
}

// registerUp adds gauge pxebootfs_NAME: 1 while up says so at scrape time.
func (m *Metrics) registerUp(name, help string, up func() bool) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, func() float64 {
		if up() {
			return 1
		}
		return 0
	}))
}
