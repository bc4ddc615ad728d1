// Package control is the admin socket between the `pxebootfs` commands
// (nodes, reset, release, reload, install, installed) and the running
// daemon.
//
// # Protocol
//
// The daemon listens on a unix stream socket, state_dir/control.sock, mode
// 0600 in a 0700 state_dir: only root reaches it, and the server checks the
// peer's uid as well. A client connects, writes one JSON [Request], closes
// its sending side, and reads one JSON [Response]; then both close. Each
// request names one operation; reset and release take several nodes and
// answer with one [Result] per node, so one bad name does not hide the
// others' outcome.
//
// Errors carry a [Code] so that commands can give distinct exit codes: an
// unknown node, a request refused (a node that booted within reset_guard),
// a bad request, a permission problem, or any other failure. On the client
// side they come back as *[Error], which matches the sentinels ([ErrUnknownNode]
// and the others) with errors.Is; a daemon that does not answer at all gives
// an error matching [ErrNotRunning] or [ErrPermission].
package control

import (
	"encoding/json"
	"errors"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// SocketName is the socket's name in state_dir.
const SocketName = "control.sock"

// SocketPath is the control socket of the daemon using stateDir.
func SocketPath(stateDir string) string { return filepath.Join(stateDir, SocketName) }

// Op is an operation.
type Op string

// Operations.
const (
	OpNodes   Op = "nodes"
	OpReset   Op = "reset"
	OpRelease Op = "release"
	OpReload  Op = "reload"
	// OpInstall puts nodes in install mode with a new token; OpInstalled
	// ends their install mode by hand.
	OpInstall   Op = "install"
	OpInstalled Op = "installed"
)

// Request is what a client sends.
type Request struct {
	Op    Op        `json:"op"`
	Nodes []node.ID `json:"nodes,omitempty"` // reset, release: hex names
	Force bool      `json:"force,omitempty"` // reset, release: even if the node booted within reset_guard
	Purge bool      `json:"purge,omitempty"` // release: also delete the node's data and forget it
	// Where (install): also every inventory node whose var NAME has value,
	// given as "NAME=value".
	Where string `json:"where,omitempty"`
}

// Response is what the daemon answers. Error is set when the request as a
// whole failed; per-node outcomes are in Results.
type Response struct {
	Error   string       `json:"error,omitempty"`
	Code    Code         `json:"code,omitempty"`
	Nodes   []NodeStatus `json:"nodes,omitempty"`   // nodes
	Results []Result     `json:"results,omitempty"` // reset, release
}

// Result is the outcome of an operation on one node.
type Result struct {
	Node  node.ID `json:"node"`
	Error string  `json:"error,omitempty"`
	Code  Code    `json:"code,omitempty"`
}

// Err returns the node's error as an *Error, or nil if it succeeded.
func (r Result) Err() error {
	if r.Error == "" && r.Code == "" {
		return nil
	}
	return &Error{Code: r.Code, Msg: r.Error}
}

// NodeStatus is one row of `pxebootfs nodes`, and its JSON form.
type NodeStatus struct {
	Node node.ID    `json:"node"`
	IP   netip.Addr `json:"ip"`
	MAC  string     `json:"mac"`
	FSID uint32     `json:"fsid"`
	// Root and RootGeneration are the root generation the node's layer is
	// made over: "root_dir" and "dir" for the config's root_dir; empty
	// for a node without a root (config-only mode, install only).
	Root           string `json:"root"`
	RootGeneration string `json:"root_generation"`
	// Mounted and Exported are null when unknown (no daemon and no access
	// to the mount table or exports, or export = none).
	Mounted   *bool     `json:"mounted"`
	Exported  *bool     `json:"exported"`
	Created   time.Time `json:"created"`
	LastBoot  time.Time `json:"last_boot,omitzero"`
	BootCount uint64    `json:"boot_count"`
	LastError string    `json:"last_error"`
	// Install is the install state ("" none, install, installing,
	// installed), since InstallChanged; InstallLoop flags a possible
	// install loop; InstallError is the installer's last failure report's
	// first line.
	Install        string    `json:"install"`
	InstallChanged time.Time `json:"install_changed,omitzero"`
	InstallLoop    bool      `json:"install_loop"`
	InstallError   string    `json:"install_error"`
	// Owner is the server holding the node's root in cluster mode; ""
	// outside one.
	Owner string `json:"owner,omitempty"`
}

// MarshalJSON writes every field, as `pxebootfs nodes -json` promises; a
// time that never happened (no boot yet, never in install mode) is null.
func (n NodeStatus) MarshalJSON() ([]byte, error) {
	type plain NodeStatus // without this method
	orNull := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return json.Marshal(struct {
		plain
		LastBoot       *time.Time `json:"last_boot"`
		InstallChanged *time.Time `json:"install_changed"`
	}{plain(n), orNull(n.LastBoot), orNull(n.InstallChanged)})
}

// Code classifies an error.
type Code string

// Error codes.
const (
	CodeUnknownNode Code = "unknown_node"
	CodeRefused     Code = "refused"
	CodeBadRequest  Code = "bad_request"
	CodePermission  Code = "permission"
	CodeFailed      Code = "failed"
)

// Sentinels matched (with errors.Is) by the errors of this package.
var (
	ErrNotRunning  = errors.New("daemon not running")
	ErrPermission  = errors.New("permission denied")
	ErrUnknownNode = errors.New("unknown node")
	ErrRefused     = errors.New("refused")
	ErrBadRequest  = errors.New("bad request")
)

// Error is an error with a Code: what a handler returns to choose the code,
// and what a client gets back from the daemon.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Is matches the sentinel of e's code.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case CodeUnknownNode:
		return target == ErrUnknownNode
	case CodeRefused:
		return target == ErrRefused
	case CodeBadRequest:
		return target == ErrBadRequest
	case CodePermission:
		return target == ErrPermission
	}
	return false
}

// CodeOf classifies err: the code of an *Error in its chain, else that of a
// sentinel it matches, else CodeFailed.
func CodeOf(err error) Code {
	var ce *Error
	switch {
	case errors.As(err, &ce) && ce.Code != "":
		return ce.Code
	case errors.Is(err, ErrUnknownNode):
		return CodeUnknownNode
	case errors.Is(err, ErrRefused):
		return CodeRefused
	case errors.Is(err, ErrBadRequest):
		return CodeBadRequest
	case errors.Is(err, ErrPermission):
		return CodePermission
	}
	return CodeFailed
}
