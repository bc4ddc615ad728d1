package nfsexport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// Ganesha's export manager on D-Bus (src/dbus in nfs-ganesha).
const (
	ganeshaDest  = "org.ganesha.nfsd"
	ganeshaPath  = dbus.ObjectPath("/org/ganesha/nfsd/ExportMgr")
	ganeshaIface = "org.ganesha.nfsd.exportmgr"
)

// busCallTimeout bounds one D-Bus call when the caller's context has no
// deadline: libdbus's own default reply timeout is 25 s.
const busCallTimeout = 30 * time.Second

// BusError is a D-Bus call to Ganesha that failed: the bus, the method and
// its arguments, and how it failed (a dbus.Error from Ganesha or the bus, or
// a connection error).
type BusError struct {
	Bus    string // "system bus" or the address
	Method string // e.g. "org.ganesha.nfsd.exportmgr.AddExport"
	Args   []any
	Err    error
}

// Error formats the call and the failure:
// `D-Bus org.ganesha.nfsd.exportmgr.RemoveExport(7) on system bus:
// org.freedesktop.DBus.Error.InvalidArgs: lookup_export failed …`.
func (e *BusError) Error() string {
	args := make([]string, len(e.Args))
	for i, a := range e.Args {
		if s, ok := a.(string); ok {
			args[i] = strconv.Quote(s)
		} else {
			args[i] = fmt.Sprint(a)
		}
	}
	s := fmt.Sprintf("D-Bus %s(%s) on %s: ", e.Method, strings.Join(args, ", "), e.Bus)
	var de dbus.Error
	if errors.As(e.Err, &de) {
		return s + de.Name + ": " + de.Error()
	}
	return s + e.Err.Error()
}

// Unwrap returns Err.
func (e *BusError) Unwrap() error { return e.Err }

// dbusErrorName is the D-Bus error name of err, or "".
func dbusErrorName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	var dp *dbus.Error
	if errors.As(err, &dp) {
		return dp.Name
	}
	return ""
}

// dbusErrorText is the D-Bus error message of err, or "".
func dbusErrorText(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Error()
	}
	var dp *dbus.Error
	if errors.As(err, &dp) {
		return dp.Error()
	}
	return ""
}

// isNoSuchExport reports Ganesha's answer to RemoveExport and DisplayExport
// for an Export_Id it does not have.
func isNoSuchExport(err error) bool {
	return dbusErrorName(err) == "org.freedesktop.DBus.Error.InvalidArgs" &&
		strings.Contains(dbusErrorText(err), "not found")
}

// errBusDown marks a failure to reach the bus at all.
var errBusDown = errors.New("D-Bus is not reachable")

// isUnreachable reports an error that says Ganesha is not running (or its
// bus is down), rather than that it refused something.
func isUnreachable(err error) bool {
	switch dbusErrorName(err) {
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
		return true
	}
	return errors.Is(err, errBusDown)
}

// isAlreadyActive reports Ganesha's answer to AddExport for an Export_Id it
// already has.
func isAlreadyActive(err error) bool {
	return strings.Contains(dbusErrorText(err), "already active")
}

// busName describes the bus for messages.
func (g *Ganesha) busName() string {
	if g.bus == "" {
		return "system bus"
	}
	return g.bus
}

// connect returns the cached connection, dialling the bus if there is none.
// The dial is bounded by ctx; the connection itself outlives it.
func (g *Ganesha) connect(ctx context.Context) (*dbus.Conn, error) {
	g.connMu.Lock()
	defer g.connMu.Unlock()
	if g.conn != nil && g.conn.Connected() {
		return g.conn, nil
	}
	connCtx, cancel := context.WithCancel(context.Background())
	// Authentication reads from the socket: a wedged bus must not hang us
	// past ctx. Cancelling the connection's context closes it.
	stop := context.AfterFunc(ctx, cancel)
	var (
		conn *dbus.Conn
		err  error
	)
	if g.bus == "" {
		conn, err = dbus.ConnectSystemBus(dbus.WithContext(connCtx))
	} else {
		conn, err = dbus.Connect(g.bus, dbus.WithContext(connCtx))
	}
	if !stop() || err != nil {
		cancel()
		if err == nil {
			conn.Close()
			err = ctx.Err()
		}
		return nil, fmt.Errorf("connect to %s: %w: %w", g.busName(), errBusDown, err)
	}
	g.conn, g.connCancel = conn, cancel
	return conn, nil
}

// dropConn forgets conn if it is still the cached one, so the next call
// dials afresh (after dbus-daemon restarted, say).
func (g *Ganesha) dropConn(conn *dbus.Conn) {
	g.connMu.Lock()
	defer g.connMu.Unlock()
	if g.conn == conn {
		g.connCancel()
		g.conn, g.connCancel = nil, nil
	}
}

// stopWatch stops the watcher of pending exports, if it runs, and readies a
// new one for later. Exports still pending are dropped: their nodes' next
// boot or the next start checks them again.
func (g *Ganesha) stopWatch() {
	g.pendingMu.Lock()
	cancel, done := g.watchCancel, g.watchDone
	g.pending, g.watching, g.watchDone = nil, false, nil
	g.pendingMu.Unlock()
	cancel()
	if done != nil {
		<-done // the last watcher, running or already finished
	}
	g.pendingMu.Lock()
	g.watchCtx, g.watchCancel = context.WithCancel(context.Background())
	g.pendingMu.Unlock()
}

// Close closes the D-Bus connection, if any. The Ganesha stays usable: the
// next call connects again.
func (g *Ganesha) Close() error {
	g.stopWatch()
	g.connMu.Lock()
	defer g.connMu.Unlock()
	if g.conn == nil {
		return nil
	}
	err := g.conn.Close()
	g.connCancel()
	g.conn, g.connCancel = nil, nil
	return err
}

// call calls an export manager method and returns the reply's body. A
// failure of the connection itself (not an error reply) is retried once on a
// new connection.
func (g *Ganesha) call(ctx context.Context, method string, args ...any) ([]any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, busCallTimeout)
		defer cancel()
	}
	full := ganeshaIface + "." + method
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var conn *dbus.Conn
		conn, err = g.connect(ctx)
		if err != nil {
			break
		}
		c := conn.Object(ganeshaDest, ganeshaPath).CallWithContext(ctx, full, 0, args...)
		if c.Err == nil {
			return c.Body, nil
		}
		err = c.Err
		if dbusErrorName(err) != "" || ctx.Err() != nil {
			break // an answer, or our own deadline: retrying changes nothing
		}
		g.dropConn(conn)
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	return nil, &BusError{Bus: g.busName(), Method: full, Args: args, Err: err}
}

// liveExport is an export as Ganesha's DisplayExport describes it.
type liveExport struct {
	ID      uint16
	Path    string
	Clients []string // as Ganesha prints them: "192.168.1.2/32", "*", …
}

// onlyClient returns the export's client when it is exactly one IPv4
// address, the only kind of export an Export can describe.
func (l liveExport) onlyClient() (netip.Addr, bool) {
	if len(l.Clients) != 1 {
		return netip.Addr{}, false
	}
	s := l.Clients[0]
	if p, err := netip.ParsePrefix(s); err == nil {
		if !p.Addr().Is4() || p.Bits() != 32 {
			return netip.Addr{}, false
		}
		return p.Addr(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// lookup describes Ganesha's export id, if it has one. It asks ShowExports
// first and DisplayExport only for an id that exists: DisplayExport of an
// unknown id succeeds as an answer but makes Ganesha log a MAJ line
// ("Export id not found"), and admins alert on those.
func (g *Ganesha) lookup(ctx context.Context, id uint16) (l liveExport, found bool, err error) {
	all, err := g.sharedShow(ctx)
	if err != nil {
		return liveExport{}, false, err
	}
	if _, ok := all[id]; !ok {
		return liveExport{}, false, nil
	}
	return g.display(ctx, id)
}

// display runs DisplayExport(id); found is false when Ganesha has no such
// export. Callers that do not know id exists use lookup.
func (g *Ganesha) display(ctx context.Context, id uint16) (l liveExport, found bool, err error) {
	body, err := g.call(ctx, "DisplayExport", id)
	if isNoSuchExport(err) {
		return liveExport{}, false, nil
	}
	if err != nil {
		return liveExport{}, false, err
	}
	// (q id, s fullpath, s pseudopath, s tag, a(s…) clients); the fields
	// of a client after its name have changed between versions, so the
	// reply is read loosely.
	if len(body) < 5 {
		return liveExport{}, false, fmt.Errorf("DisplayExport(%d): reply has %d values, want 5", id, len(body))
	}
	gotID, ok1 := body[0].(uint16)
	path, ok2 := body[1].(string)
	clients, ok3 := structList(body[4])
	if !ok1 || !ok2 || !ok3 {
		return liveExport{}, false, fmt.Errorf("DisplayExport(%d): unexpected reply %v", id, body)
	}
	l = liveExport{ID: gotID, Path: path}
	for _, c := range clients {
		if len(c) == 0 {
			continue
		}
		if s, ok := c[0].(string); ok {
			l.Clients = append(l.Clients, s)
		}
	}
	return l, true, nil
}

// show runs ShowExports and returns every active export's id and path,
// including the NFSv4 pseudo-root (id 0, path "/").
func (g *Ganesha) show(ctx context.Context) (map[uint16]string, error) {
	body, err := g.call(ctx, "ShowExports")
	if err != nil {
		return nil, err
	}
	// ((tt) time, a(q id, s path, …) exports)
	if len(body) < 2 {
		return nil, fmt.Errorf("ShowExports: reply has %d values, want 2", len(body))
	}
	list, ok := structList(body[1])
	if !ok {
		return nil, fmt.Errorf("ShowExports: unexpected reply %v", body)
	}
	out := make(map[uint16]string, len(list))
	for _, s := range list {
		if len(s) < 2 {
			return nil, fmt.Errorf("ShowExports: unexpected export %v", s)
		}
		id, ok1 := s[0].(uint16)
		path, ok2 := s[1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("ShowExports: unexpected export %v", s)
		}
		out[id] = path
	}
	g.seenMu.Lock()
	for id := range out {
		g.seen[id] = true
	}
	g.seenMu.Unlock()
	return out, nil
}

// structList reads a D-Bus array of structs, which godbus decodes as a slice
// of []any.
func structList(v any) ([][]any, bool) {
	switch x := v.(type) {
	case [][]any:
		return x, true
	case []any:
		out := make([][]any, 0, len(x))
		for _, e := range x {
			s, ok := e.([]any)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// exportExpr selects one block of the managed file for AddExport and
// UpdateExport.
func exportExpr(id uint16) string {
	return "EXPORT(Export_Id=" + strconv.Itoa(int(id)) + ")"
}

// addExport and updateExport hand Ganesha a file that holds e's block
// alone, not the managed file: Ganesha parses the whole file it is given
// on every call, and the managed file holds every node. Measured here,
// AddExport from a managed file of 500 blocks took 124 ms (one at a time),
// which made a storm of new nodes quadratic in the fleet.
func (g *Ganesha) addExport(ctx context.Context, e Export) error {
	err := g.oneBlockCall(ctx, "AddExport", e)
	if err == nil || isAlreadyActive(err) {
		g.noteLive(uint16(e.FSID), true)
	}
	return err
}

func (g *Ganesha) updateExport(ctx context.Context, e Export) error {
	return g.oneBlockCall(ctx, "UpdateExport", e)
}

// oneBlockCall runs method with a temporary file beside the managed one
// that holds e's block, removed once Ganesha has read it (Ganesha keeps
// what it parsed; at its start it reads the managed file).
func (g *Ganesha) oneBlockCall(ctx context.Context, method string, e Export) error {
	_, err := g.blocksCall(ctx, method, []ganeshaBlock{blockOf(e)}, exportExpr(uint16(e.FSID)))
	return err
}

// blocksCall runs method(file, expr) with a temporary file holding blocks.
func (g *Ganesha) blocksCall(ctx context.Context, method string, blocks []ganeshaBlock, expr string) ([]any, error) {
	f, err := os.CreateTemp(filepath.Dir(g.file), oneBlockPattern(g.file))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(renderGaneshaFile(g.file, blocks))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("%s: write %s: %w", method, f.Name(), err)
	}
	return g.call(ctx, method, f.Name(), expr)
}

// everyBlockExpr selects every block renderGaneshaFile writes (each has
// Access_Type = None at its top; see there).
const everyBlockExpr = "EXPORT(Access_Type=None)"

// addNew adds e, an export Ganesha was never seen to have, together with
// the new exports of concurrent callers: one AddExport for all of them.
// Ganesha's AddExport costs O(exports it has) per call (measured: 0.9 ms
// with none, 3.3 ms with 3,000), and it answers one call at a time, so in a
// storm of new nodes one call per node made each node cost O(fleet); 64
// blocks in one call took 52 ms with 3,000 exports, 0.8 ms each. If the
// shared call fails, or adds fewer than asked, each is added on its own, so
// that each caller gets its own answer ("already active" for one the
// shared call did add, which apply takes as such).
func (g *Ganesha) addNew(ctx context.Context, e Export) error {
	return g.addBatch.do(e, func(batch []Export) []error {
		return g.addNewBatch(context.WithoutCancel(ctx), batch)
	})
}

func (g *Ganesha) addNewBatch(ctx context.Context, batch []Export) []error {
	errs := make([]error, len(batch))
	if len(batch) > 1 {
		blocks := make([]ganeshaBlock, len(batch))
		for i, e := range batch {
			blocks[i] = blockOf(e)
		}
		body, err := g.blocksCall(ctx, "AddExport", blocks, everyBlockExpr)
		if err == nil && exportsAdded(body) == len(batch) {
			for _, e := range batch {
				g.noteLive(uint16(e.FSID), true)
			}
			return errs
		}
		if isUnreachable(err) {
			for i := range errs {
				errs[i] = err
			}
			return errs
		}
		g.log.Warn("adding exports one by one: adding them together failed", "exports", len(batch), "answer", body, "err", err)
	}
	for i, e := range batch {
		errs[i] = g.addExport(ctx, e)
	}
	return errs
}

// exportsAdded reads AddExport's answer, "N exports added"; -1 if it says
// something else.
func exportsAdded(body []any) int {
	if len(body) == 0 {
		return -1
	}
	msg, ok := body[0].(string)
	if !ok {
		return -1
	}
	var n int
	if _, err := fmt.Sscanf(msg, "%d exports added", &n); err != nil {
		return -1
	}
	return n
}

// oneBlockPattern names oneBlockCall's files: hidden, and never a name
// that ends in .conf, which an admin's %include of a directory might read.
func oneBlockPattern(file string) string { return "." + filepath.Base(file) + ".one-*" }

// removeOneBlockFiles removes the files of calls a crash interrupted.
func (g *Ganesha) removeOneBlockFiles() {
	strays, _ := filepath.Glob(filepath.Join(filepath.Dir(g.file), oneBlockPattern(g.file)))
	for _, p := range strays {
		if err := os.Remove(p); err != nil {
			g.log.Warn("cannot remove a leftover file", "path", p, "err", err)
		}
	}
}

// showCall is one caller of sharedShow.
type showCall struct {
	live map[uint16]string
}

// sharedShow is show for callers that only read the answer: concurrent
// callers share one ShowExports (Ganesha answers D-Bus calls one at a time,
// and the answer lists every export), as concurrent edits share one write
// of the managed file. A caller gets a call that started after it asked,
// so its answer is never older than its question. The map is shared: do
// not modify it.
func (g *Ganesha) sharedShow(ctx context.Context) (map[uint16]string, error) {
	c := &showCall{}
	err := g.showBatch.do(c, func(calls []*showCall) []error {
		// The caller whose call this is may give up; the others wait
		// for the answer all the same (call bounds it).
		live, err := g.show(context.WithoutCancel(ctx))
		errs := make([]error, len(calls))
		for i, c := range calls {
			c.live, errs[i] = live, err
		}
		return errs
	})
	return c.live, err
}

// removeExport runs RemoveExport(id); removed is false when there was no
// such export. Like lookup, it asks ShowExports first, so that an id
// Ganesha does not have costs no MAJ line in its log.
func (g *Ganesha) removeExport(ctx context.Context, id uint16) (removed bool, err error) {
	all, err := g.sharedShow(ctx)
	if err != nil {
		return false, err
	}
	if _, ok := all[id]; !ok {
		return false, nil
	}
	_, err = g.call(ctx, "RemoveExport", id)
	if err == nil || isNoSuchExport(err) {
		g.noteLive(id, false)
	}
	if isNoSuchExport(err) {
		return false, nil
	}
	return err == nil, err
}

// noteLive records whether Ganesha exports id, as just seen.
func (g *Ganesha) noteLive(id uint16, live bool) {
	g.seenMu.Lock()
	defer g.seenMu.Unlock()
	if live {
		g.seen[id] = true
	} else {
		delete(g.seen, id)
	}
}

// seenLive reports whether Ganesha was seen to export id.
func (g *Ganesha) seenLive(id uint16) bool {
	g.seenMu.Lock()
	defer g.seenMu.Unlock()
	return g.seen[id]
}
