package generator

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/pxebootfs/pxebootfs/internal/pxename"
)

// Defaults for Options' zero values.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultTTL         = 10 * time.Second
	DefaultNegativeTTL = time.Second
	DefaultConcurrency = 8
	// DefaultMaxSize bounds one result, like a static file; pxelinux
	// configs are kilobytes, but a generator may serve other files.
	DefaultMaxSize = 64 << 20
	// DefaultMaxCache bounds the bytes of cached successes.
	DefaultMaxCache = 256 << 20
)

// Env is the whole environment a program runs with: nothing of the
// daemon's own (which may hold secrets or odd locales) leaks to it.
var Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}

// Options configures a Runner.
type Options struct {
	Program     string        // absolute path of the program
	Timeout     time.Duration // longest run, and longest wait for a slot
	TTL         time.Duration // how long a success is reused
	NegativeTTL time.Duration // how long a failure is reused; at most TTL
	Concurrency int           // most programs running at once
	MaxSize     int64         // most bytes one run may produce
	MaxCache    int64         // most bytes of successes kept in the cache
	TempDir     string        // where output files live (unlinked); default os.TempDir()
	Logger      *slog.Logger
	Now         func() time.Time // the clock (tests); default time.Now
}

// Request is one name to generate.
type Request struct {
	Name string // the requested file name; must pass pxename.CheckStatic
	File string // --file: the full path the tftpd asked for
	IP   string // --ip, "" when unknown
	MAC  string // --mac, "" when unknown
	Node string // --node (8 hex digits), "" when unknown
}

// Args are the program's arguments for q, in a fixed order.
func (q Request) Args() []string {
	args := []string{"--file", q.File}
	for _, a := range [][2]string{{"--ip", q.IP}, {"--mac", q.MAC}, {"--node", q.Node}} {
		if a[1] != "" {
			args = append(args, a[0], a[1])
		}
	}
	return args
}

// key identifies a request in the cache: the same name asked with other
// arguments (an inventory reload gave the node another MAC) is another run.
func (q Request) key() string {
	return strings.Join([]string{q.Name, q.File, q.IP, q.MAC, q.Node}, "\x00")
}

// Result is one successful run. It is immutable and shared by every caller
// that gets it; Data must not be modified.
type Result struct {
	Request Request
	Data    []byte
	Time    time.Time // when the program finished
	Seq     uint64    // distinct for every run of this Runner
}

// notFound errors are what a failed generation is to a tftpd: no such file.
type notFound string

func (e notFound) Error() string        { return string(e) }
func (e notFound) Is(target error) bool { return target == fs.ErrNotExist }

// Reasons a request produced no file; each matches fs.ErrNotExist.
var (
	ErrDeclined = notFound("content generator exited with a non-zero status")
	ErrEmpty    = notFound("content generator wrote no bytes")
	ErrTimeout  = notFound("content generator ran past its timeout and was killed")
	ErrTooLarge = notFound("content generator wrote more than the size limit")
	ErrBusy     = notFound("no content generator slot free within the timeout")
	ErrStart    = notFound("content generator could not be started")
	ErrBadName  = notFound("name may not be passed to the content generator")
)

// Runner runs the program and caches results. Safe for concurrent use.
type Runner struct {
	opt   Options
	log   *slog.Logger
	sem   chan struct{}
	group singleflight.Group
	seq   atomic.Uint64

	mu        sync.Mutex
	cache     map[string]*cached
	bytes     int64 // len(Data) summed over cached successes
	lastSweep time.Time
}

type cached struct {
	res     *Result
	err     error
	expires time.Time
}

// sweepEvery is how often expired entries are dropped; between sweeps the
// cache holds at most what ran in that time.
const sweepEvery = time.Second

// New checks o and returns a Runner.
func New(o Options) (*Runner, error) {
	if o.Program == "" || !filepath.IsAbs(o.Program) {
		return nil, fmt.Errorf("content generator %q: need an absolute path", o.Program)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = DefaultNegativeTTL
	}
	o.NegativeTTL = min(o.NegativeTTL, o.TTL)
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxCache <= 0 {
		o.MaxCache = DefaultMaxCache
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	markInheritedCloexec()
	return &Runner{
		opt:   o,
		log:   o.Logger.With("generator", o.Program),
		sem:   make(chan struct{}, o.Concurrency),
		cache: map[string]*cached{},
	}, nil
}

// Options returns the options in effect, defaults filled in.
func (r *Runner) Options() Options { return r.opt }

// Get returns the content for q: a cached result, or a new run. A cached
// success is reused only if it stays valid for at least minLeft more, so a
// caller about to serve it (an open, followed by the tftpd's fstat) can ask
// for one that will not expire in between. Concurrent calls for one request
// share one run, which the caller's ctx does not cancel (others may be
// waiting for it); ctx only ends this caller's wait.
func (r *Runner) Get(ctx context.Context, q Request, minLeft time.Duration) (*Result, error) {
	if err := checkRequest(q); err != nil {
		return nil, err
	}
	key := q.key()
	if res, err, ok := r.lookup(key, minLeft); ok {
		return res, err
	}
	ch := r.group.DoChan(key, func() (any, error) {
		// Stored by a flight that ended since our lookup?
		if res, err, ok := r.lookup(key, minLeft); ok {
			return res, err
		}
		res, err := r.run(q)
		r.store(key, res, err)
		return res, err
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case v := <-ch:
		res, _ := v.Val.(*Result)
		return res, v.Err
	}
}

// checkRequest is the last line of defence: the catalog validates names
// before asking, but nothing hostile may reach the program's argv.
func checkRequest(q Request) error {
	if err := pxename.CheckStatic(q.Name); err != nil {
		return fmt.Errorf("%q: %v: %w", q.Name, err, ErrBadName)
	}
	if !filepath.IsAbs(q.File) || filepath.Base(q.File) != q.Name || strings.IndexByte(q.File, 0) >= 0 {
		return fmt.Errorf("--file %q must be an absolute path ending in %q: %w", q.File, q.Name, ErrBadName)
	}
	for _, v := range []string{q.IP, q.MAC, q.Node} {
		if pxename.CheckStatic(v) != nil && v != "" {
			return fmt.Errorf("argument %q: %w", v, ErrBadName)
		}
	}
	return nil
}

func (r *Runner) lookup(key string, minLeft time.Duration) (*Result, error, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.cache[key]
	if !ok {
		return nil, nil, false
	}
	left := c.expires.Sub(r.opt.Now())
	if left <= 0 || (c.err == nil && left < minLeft) {
		return nil, nil, false
	}
	return c.res, c.err, true
}

func (r *Runner) store(key string, res *Result, err error) {
	now := r.opt.Now()
	ttl := r.opt.TTL
	if err != nil {
		ttl = r.opt.NegativeTTL
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.cache[key]; ok && old.res != nil {
		r.bytes -= int64(len(old.res.Data))
	}
	r.cache[key] = &cached{res: res, err: err, expires: now.Add(ttl)}
	if res != nil {
		r.bytes += int64(len(res.Data))
	}
	if now.Sub(r.lastSweep) >= sweepEvery || r.bytes > r.opt.MaxCache {
		r.lastSweep = now
		for k, c := range r.cache {
			if !c.expires.After(now) {
				r.drop(k, c)
			}
		}
	}
	// Still over: drop the successes closest to expiry, never the one just
	// stored (its caller is about to serve it).
	for r.bytes > r.opt.MaxCache {
		var oldK string
		var old *cached
		for k, c := range r.cache {
			if k != key && c.res != nil && (old == nil || c.expires.Before(old.expires)) {
				oldK, old = k, c
			}
		}
		if old == nil {
			break
		}
		r.drop(oldK, old)
	}
}

func (r *Runner) drop(k string, c *cached) {
	if c.res != nil {
		r.bytes -= int64(len(c.res.Data))
	}
	delete(r.cache, k)
}

// Forget empties the cache, so the next request of every name runs the
// program again (e.g. after an admin changed the database).
func (r *Runner) Forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cache = map[string]*cached{}
	r.bytes = 0
}

// run takes a slot, waiting at most the timeout, and runs the program.
func (r *Runner) run(q Request) (*Result, error) {
	wait := time.NewTimer(r.opt.Timeout)
	select {
	case r.sem <- struct{}{}:
		wait.Stop()
	case <-wait.C:
		err := fmt.Errorf("content generator for %q: %d running, waited %v: %w", q.Name, r.opt.Concurrency, r.opt.Timeout, ErrBusy)
		r.log.Warn("generator busy", "name", q.Name, "err", err)
		return nil, err
	}
	defer func() { <-r.sem }()
	data, err := r.exec(q)
	if err != nil {
		return nil, err
	}
	return &Result{Request: q, Data: data, Time: r.opt.Now(), Seq: r.seq.Add(1)}, nil
}
