// Package install carries nodes through install mode: a node put in install
// mode is served its install template until its own installer reports, over
// HTTP, that it is done; from then on it is served a config that boots its
// local disk. It is the "reinstall unless told otherwise" switch of atftpd's
// content-generator seed, made safe and forgiving.
//
// # States
//
// A node's state is kept in its registry record (package registry), so it
// survives restarts and works without NFS roots (config-only mode):
//
//	none        the node's usual template (every node that never installed)
//	install     install template; entered by `pxebootfs install` or, for an
//	            inventory node with install = true, the first time it is seen
//	installing  install template; the installer called started
//	installed   local-boot template; the installer called done, or an admin
//	            ran `pxebootfs installed`
//
// # Callback
//
// An installer calls GET or POST /v1/install/NODE/{started,done,failed}
// ?token=TOKEN (see [ParsePath] and [Manager.Handler]). A call is authorised
// only when it comes from the node's own address and carries the node's
// current token; the token is 128 random bits, made anew each time the node
// enters install mode, so an old one stops working. Calls are idempotent
// where an installer may repeat them: a second done (or started) with the
// right token answers 200 and changes nothing. A call that does not fit the
// state (started after done) answers 409 and changes nothing.
//
// # Loop guard
//
// A node whose install config was served install_max_boots times without a
// started call (or, once installing, without done) is flagged: its installer
// never reaches the callback, and it would reinstall all night. The flag is
// logged once, shown by `pxebootfs nodes` and counted in the metrics.
package install

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/atomicfile"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

// Store keeps the records; *registry.Registry implements it.
type Store interface {
	Get(id node.ID) (registry.Record, bool)
	All() []registry.Record
	Change(id node.ID, create bool, change func(*registry.Record) (durable bool, err error)) (registry.Record, error)
}

var _ Store = (*registry.Registry)(nil)

// Options configures a Manager.
type Options struct {
	Store Store
	// Dir is state_dir: failure reports are kept in Dir/install-reports.
	Dir string
	// CallbackURL is callback_url ("" when unset).
	CallbackURL string
	// MaxBoots is install_max_boots (default 3).
	MaxBoots int
	Logger   *slog.Logger
	Now      func() time.Time
	// Changed, if set, is called after a change of what a node's config
	// renders (its state or token), to drop cached copies.
	Changed func(id node.ID)
	// Allowed, if set, is the allow list: callbacks from elsewhere are
	// refused like any other source mismatch.
	Allowed func(netip.Addr) bool
	// Metrics, if set, counts callbacks.
	Metrics Metrics
}

// Metrics is told about every callback.
type Metrics interface {
	InstallCallback(action string, status int)
}

// Manager changes install states. Safe for concurrent use.
type Manager struct {
	o Options
}

// MaxReport is how much of a failed call's body is kept.
const MaxReport = 64 << 10

// ReportsDir is where failure reports live, in state_dir.
const ReportsDir = "install-reports"

// Errors of admin operations, matched with errors.Is.
var (
	ErrNotInstalling = errors.New("not in install mode")
	ErrUnknownNode   = registry.ErrUnknownNode
)

// New returns a Manager.
func New(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBoots <= 0 {
		o.MaxBoots = 3
	}
	return &Manager{o: o}
}

// View is what a node's config is rendered from.
type View struct {
	State registry.InstallState
	// Token is set in install mode and once installed (a repeated done
	// needs it); "" otherwise.
	Token string
	// CallbackURL is callback_url + /v1/install/NODE, "" without one.
	CallbackURL string
	// Loop: the node may be caught in an install loop.
	Loop bool
	// Fresh: the node never was in install mode.
	Fresh bool
}

// View tells how id's config renders now, with no side effects.
func (m *Manager) View(id node.ID) View {
	rec, _ := m.o.Store.Get(id)
	return m.view(rec.Install, id)
}

func (m *Manager) view(in registry.Install, id node.ID) View {
	v := View{State: in.State, Token: in.Token, Loop: m.Loop(in), Fresh: never(in)}
	if m.o.CallbackURL != "" {
		v.CallbackURL = m.o.CallbackURL + "/v1/install/" + id.String()
	}
	return v
}

// Loop reports whether a node in state in may be caught in an install loop:
// its install config was served more than install_max_boots times without
// started (or since started, without done). The servings up to the limit
// are legitimate: each is counted when the config is served, before that
// boot's installer can call started, so with install_max_boots = 1 the
// first serving is not yet a loop, the second is.
func (m *Manager) Loop(in registry.Install) bool {
	return in.IsInstalling() && int(in.Served) > m.o.MaxBoots
}

// Records lists every node's record.
func (m *Manager) Records() []registry.Record { return m.o.Store.All() }

// MaxBoots is install_max_boots.
func (m *Manager) MaxBoots() int { return m.o.MaxBoots }

// newToken makes 128 random bits, hex.
func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make install token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// short is what logs show of a token: enough to tell two apart.
func short(token string) string {
	if len(token) < 4 {
		return "…"
	}
	return token[:4] + "…"
}

// Enter puts id in install mode with a new token, whatever its state: the
// old token stops working. The node is created in the registry if unknown.
func (m *Manager) Enter(id node.ID, reason string) error {
	return m.enter(id, reason, false)
}

// errUnchanged aborts a Change that has nothing to do.
var errUnchanged = errors.New("unchanged")

// FirstSight enters install mode for a node that never was in it (an
// inventory node with install = true); a node that was is left as it is,
// so an installed node does not install again.
func (m *Manager) FirstSight(id node.ID) error {
	return m.enter(id, "inventory install = true, first sight", true)
}

// never reports whether a node whose install record is in has never been
// in install mode.
func never(in registry.Install) bool {
	return in.State == registry.InstallNone && in.Token == ""
}

// enter is Enter, and with onlyNever FirstSight.
func (m *Manager) enter(id node.ID, reason string, onlyNever bool) error {
	token, err := newToken()
	if err != nil {
		return err
	}
	_, err = m.o.Store.Change(id, true, func(r *registry.Record) (bool, error) {
		if onlyNever && !never(r.Install) {
			return false, errUnchanged
		}
		r.Install = registry.Install{State: registry.InstallPending, Token: token, Changed: m.o.Now().UTC()}
		return true, nil
	})
	switch {
	case errors.Is(err, errUnchanged):
		return nil
	case err != nil:
		return fmt.Errorf("install %s (%s): %w", id, reason, err)
	}
	if !onlyNever {
		// A node that never was in install mode has no report.
		if err := os.Remove(m.reportPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			m.o.Logger.Warn("install: remove the previous failure report", "node", id, "err", err)
		}
	}
	m.o.Logger.Info("install: node in install mode", "node", id, "reason", reason, "token", short(token))
	m.changed(id)
	return nil
}

// Finish ends id's install mode by hand: it is served its local-boot
// config. Its token keeps answering a repeated done.
func (m *Manager) Finish(id node.ID) error {
	_, err := m.o.Store.Change(id, false, func(r *registry.Record) (bool, error) {
		switch r.Install.State {
		case registry.InstallNone:
			return false, ErrNotInstalling
		case registry.InstallDone:
			return false, errUnchanged
		}
		r.Install.State, r.Install.Changed, r.Install.Served = registry.InstallDone, m.o.Now().UTC(), 0
		return true, nil
	})
	switch {
	case errors.Is(err, errUnchanged):
		return nil
	case err != nil:
		return fmt.Errorf("installed %s: %w", id, err)
	}
	m.o.Logger.Info("install: node installed", "node", id, "by", "admin")
	m.changed(id)
	return nil
}

// Served counts one serving of id's install config, for the loop guard.
// It costs no fsync (like a boot record).
func (m *Manager) Served(id node.ID) {
	rec, err := m.o.Store.Change(id, false, func(r *registry.Record) (bool, error) {
		if !r.Install.IsInstalling() {
			return false, errUnchanged
		}
		r.Install.Served++
		return false, nil
	})
	if err != nil {
		return
	}
	if int(rec.Install.Served) == m.o.MaxBoots+1 {
		what := "without its installer calling started"
		if rec.Install.State == registry.InstallRunning {
			what = "since its installer called started, without done"
		}
		m.o.Logger.Warn("install: possible install loop: the install config was served "+fmt.Sprint(rec.Install.Served)+" times "+what+"; check the template's callback",
			"node", id, "state", rec.Install.State, "install_max_boots", m.o.MaxBoots)
	}
}

func (m *Manager) changed(id node.ID) {
	if m.o.Changed != nil {
		m.o.Changed(id)
	}
}

func (m *Manager) reportPath(id node.ID) string {
	return filepath.Join(m.o.Dir, ReportsDir, id.String())
}

// ReportPath is where id's last failure report is kept.
func (m *Manager) ReportPath(id node.ID) string { return m.reportPath(id) }

// Action is a callback's verb.
type Action string

// Callback actions.
const (
	Started Action = "started"
	Done    Action = "done"
	Failed  Action = "failed"
)

// Outcome is a callback's answer.
type Outcome struct {
	Status int    // HTTP status
	Msg    string // one line for the installer and the log; never the token
}

// Report carries out a callback: action on node id from address src with
// token, body being the request's body (at most MaxReport bytes are kept).
func (m *Manager) Report(src netip.Addr, id node.ID, action Action, token string, body []byte) Outcome {
	src = src.Unmap()
	if src != id.Addr() || (m.o.Allowed != nil && !m.o.Allowed(src)) {
		return Outcome{403, "forbidden: the call must come from the node's own address"}
	}
	rec, ok := m.o.Store.Get(id)
	if !ok || rec.Install.Token == "" {
		return Outcome{404, "unknown node: " + id.String() + " was never put in install mode"}
	}
	if len(body) > MaxReport {
		body = body[:MaxReport]
	}
	now := m.o.Now().UTC()
	var out Outcome
	var stateChanged bool
	_, err := m.o.Store.Change(id, false, func(r *registry.Record) (bool, error) {
		in := &r.Install
		// Checked again under the store's lock: an admin's install may
		// have made a new token since the Get above.
		if subtle.ConstantTimeCompare([]byte(token), []byte(in.Token)) != 1 {
			out = Outcome{403, "forbidden: wrong token"}
			return false, errUnchanged
		}
		switch {
		case action == Done && in.State == registry.InstallDone:
			out = Outcome{200, "ok: already installed"}
			return false, errUnchanged
		case action == Started && in.State == registry.InstallRunning:
			out = Outcome{200, "ok: already installing"}
			return false, errUnchanged
		case !in.IsInstalling():
			out = Outcome{409, fmt.Sprintf("conflict: %s does not fit state %s", action, stateName(in.State))}
			return false, errUnchanged
		}
		switch action {
		case Started:
			in.State, in.Changed, in.Served = registry.InstallRunning, now, 0
			out, stateChanged = Outcome{200, "ok: installing"}, true
		case Done:
			in.State, in.Changed, in.Served = registry.InstallDone, now, 0
			out, stateChanged = Outcome{200, "ok: installed; the next boot is from the local disk"}, true
		case Failed:
			// The report goes to its file before the record says so.
			if err := m.saveReport(id, body); err != nil {
				out = Outcome{500, "internal error: could not store the report"}
				return false, err
			}
			in.Failed, in.Error = now, registry.Summary(string(body))
			if in.Error == "" {
				in.Error = "(no report)"
			}
			out = Outcome{200, "ok: failure recorded; the node stays in install mode"}
		}
		return true, nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		m.o.Logger.Error("install: callback", "node", id, "action", action, "err", err)
		switch {
		case errors.Is(err, registry.ErrUnavailable):
			// Cluster mode with etcd unreachable: installers retry.
			out = Outcome{503, "service unavailable: the boot servers' shared state cannot be reached; try again"}
		case out.Status == 0 || out.Status == 200:
			out = Outcome{500, "internal error"}
		}
	}
	if stateChanged {
		m.changed(id)
	}
	return out
}

func stateName(s registry.InstallState) string {
	if s == registry.InstallNone {
		return "none"
	}
	return string(s)
}

func (m *Manager) saveReport(id node.ID, body []byte) error {
	dir := filepath.Join(m.o.Dir, ReportsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store install report: %w", err)
	}
	return atomicfile.Write(m.reportPath(id), body, 0o600)
}
