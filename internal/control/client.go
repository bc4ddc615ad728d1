package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// Client talks to the daemon on one socket. Each call is one connection.
type Client struct {
	path string
}

// NewClient returns a client of the socket at path (see SocketPath).
func NewClient(path string) *Client { return &Client{path: path} }

// Nodes lists the daemon's nodes.
func (c *Client) Nodes(ctx context.Context) ([]NodeStatus, error) {
	resp, err := c.do(ctx, Request{Op: OpNodes})
	if err != nil {
		return nil, err
	}
	return resp.Nodes, nil
}

// Reset resets nodes; the error is for the request as a whole, the
// per-node outcomes are in the results (see Result.Err).
func (c *Client) Reset(ctx context.Context, nodes []node.ID, force bool) ([]Result, error) {
	resp, err := c.do(ctx, Request{Op: OpReset, Nodes: nodes, Force: force})
	if err != nil {
		return nil, err
	}
	return resp.Results, nil
}

// Release releases nodes, and purges them if purge; see Reset for errors.
func (c *Client) Release(ctx context.Context, nodes []node.ID, purge, force bool) ([]Result, error) {
	resp, err := c.do(ctx, Request{Op: OpRelease, Nodes: nodes, Purge: purge, Force: force})
	if err != nil {
		return nil, err
	}
	return resp.Results, nil
}

// Install puts nodes, and every inventory node matching where
// ("NAME=value", "" for none), in install mode; see Reset for errors.
func (c *Client) Install(ctx context.Context, nodes []node.ID, where string) ([]Result, error) {
	resp, err := c.do(ctx, Request{Op: OpInstall, Nodes: nodes, Where: where})
	if err != nil {
		return nil, err
	}
	return resp.Results, nil
}

// Installed ends nodes' install mode; see Reset for errors.
func (c *Client) Installed(ctx context.Context, nodes []node.ID) ([]Result, error) {
	resp, err := c.do(ctx, Request{Op: OpInstalled, Nodes: nodes})
	if err != nil {
		return nil, err
	}
	return resp.Results, nil
}

// Reload asks the daemon to re-read its config.
func (c *Client) Reload(ctx context.Context) error {
	_, err := c.do(ctx, Request{Op: OpReload})
	return err
}

func (c *Client) do(ctx context.Context, req Request) (Response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return Response{}, dialError(c.path, err)
	}
	defer conn.Close()
	// The answer may take a while (a reset of many nodes); only the
	// caller's context bounds it.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	// A daemon that refuses us answers without reading the request, so a
	// failed send may still have an answer waiting: read it first.
	sendErr := json.NewEncoder(conn).Encode(req)
	if uc, ok := conn.(*net.UnixConn); ok && sendErr == nil {
		uc.CloseWrite()
	}
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if sendErr != nil {
			return Response{}, c.ioError(ctx, "send request", sendErr)
		}
		return Response{}, c.ioError(ctx, "read response", err)
	}
	if resp.Error != "" {
		code := resp.Code
		if code == "" {
			code = CodeFailed
		}
		return resp, &Error{Code: code, Msg: resp.Error}
	}
	return resp, nil
}

func (c *Client) ioError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return fmt.Errorf("control socket %s: %s: %w", c.path, what, err)
}

// dialError says why the daemon could not be reached: nothing listening
// (no socket, or a stale one) or no permission to connect.
func dialError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("no pxebootfs daemon is listening on %s (is it running? systemctl status pxebootfs): %w", path, ErrNotRunning)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("cannot connect to %s: %w (admin commands need root)", path, ErrPermission)
	}
	return fmt.Errorf("connect to %s: %w", path, err)
}
