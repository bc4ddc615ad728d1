package testenv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TFTP opcodes and error codes (RFC 1350, RFC 2347).
const (
	opRRQ   = 1
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6

	errCodeNotDefined = 0
	errCodeUnknownTID = 5
	errCodeBadOption  = 8
)

const (
	// defaultBlksize is RFC 1350's fixed block size, used when no blksize
	// option is negotiated.
	defaultBlksize = 512
	// maxBlksize is RFC 2348's upper bound.
	maxBlksize = 65464
	// getRetries bounds retransmissions of one packet, so a dead server
	// fails the test instead of hanging it.
	getRetries = 5
	// defaultGetTimeout is the per-packet wait before a retransmission,
	// tftpd-hpa's own default.
	defaultGetTimeout = time.Second
)

// TFTPError is an ERROR packet received from a TFTP server. Code 1 is "file
// not found", code 2 "access violation".
type TFTPError struct {
	Code int
	Msg  string
}

func (e *TFTPError) Error() string {
	return fmt.Sprintf("tftp error %d: %s", e.Code, e.Msg)
}

// GetOptions selects the RFC 2347 options a Get asks for.
type GetOptions struct {
	// Blksize asks for this block size (RFC 2348); 0 asks for none, which
	// means 512-byte blocks.
	Blksize int
	// Tsize asks the server to announce the file size (RFC 2349), which
	// pxelinux relies on.
	Tsize bool
	// Timeout is how long to wait for each packet before retransmitting the
	// last one (at most a few times); 0 means one second. The whole transfer
	// is also bounded by the context.
	Timeout time.Duration
}

// Result is a completed read transfer.
type Result struct {
	Data []byte
	// Tsize is the size the server announced in its OACK, or -1 when it
	// announced none.
	Tsize int64
	// Blksize is the block size in effect: the negotiated one, or 512.
	Blksize int
}

// Get reads name from the TFTP server at addr ("127.0.0.1:69") in octet mode.
// An ERROR packet from the server comes back as a wrapped *TFTPError. Only
// loopback addresses are accepted: tests must not send traffic elsewhere.
func Get(ctx context.Context, addr, name string, opts GetOptions) (Result, error) {
	res, err := get(ctx, addr, name, opts)
	if err != nil {
		return Result{}, fmt.Errorf("tftp get %q from %s: %w", name, addr, err)
	}
	return res, nil
}

func get(ctx context.Context, addr, name string, opts GetOptions) (Result, error) {
	server, err := netip.ParseAddrPort(addr)
	if err != nil {
		return Result{}, fmt.Errorf("parse address: %w", err)
	}
	if !server.Addr().IsLoopback() {
		return Result{}, fmt.Errorf("address %s is not loopback", server.Addr())
	}
	if opts.Blksize != 0 && (opts.Blksize < 8 || opts.Blksize > maxBlksize) {
		return Result{}, fmt.Errorf("blksize %d out of range 8..%d", opts.Blksize, maxBlksize)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return Result{}, errors.New("file name contains a NUL byte")
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = defaultGetTimeout
	}

	network, local := "udp4", netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if server.Addr().Is6() && !server.Addr().Is4In6() {
		network, local = "udp6", netip.IPv6Loopback()
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		return Result{}, fmt.Errorf("listen: %w", err)
	}
	defer conn.Close()
	// A cancelled context must interrupt a blocked read at once, not after
	// the retransmission timeout.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	x := &transfer{
		conn:    conn,
		server:  netip.AddrPortFrom(server.Addr().Unmap(), server.Port()),
		opts:    opts,
		timeout: timeout,
		res:     Result{Tsize: -1, Blksize: defaultBlksize},
	}
	x.last = rrqPacket(name, opts)
	if err := x.run(ctx); err != nil {
		var te *TFTPError
		if x.tidKnown && !errors.As(err, &te) {
			// Tell the server to give up now, so its child does not keep
			// retransmitting (and holding the file open) after we left.
			x.send(x.peer, errorPacket(errCodeNotDefined, "client gave up"))
		}
		return Result{}, err
	}
	return x.res, nil
}

// transfer is the state of one read request.
type transfer struct {
	conn    *net.UDPConn
	server  netip.AddrPort // where the request goes
	opts    GetOptions
	timeout time.Duration

	peer     netip.AddrPort // the server's transfer ID, once known
	tidKnown bool
	last     []byte // the packet to retransmit on timeout
	lastTo   netip.AddrPort
	expect   uint16 // next DATA block; wraps to 0 after 65535 as tftpd-hpa does
	res      Result
}

func (x *transfer) send(to netip.AddrPort, pkt []byte) error {
	if _, err := x.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		return fmt.Errorf("send to %s: %w", to, err)
	}
	return nil
}

func (x *transfer) run(ctx context.Context) error {
	x.lastTo = x.server
	x.expect = 1
	if err := x.send(x.lastTo, x.last); err != nil {
		return err
	}
	buf := make([]byte, 4+maxBlksize+1)
	tries := 0
	for {
		x.conn.SetReadDeadline(time.Now().Add(x.timeout))
		// Checked after setting the deadline, so a cancellation racing with
		// it cannot leave us blocked for a whole timeout.
		if err := ctx.Err(); err != nil {
			return err
		}
		n, from, err := x.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return fmt.Errorf("receive: %w", err)
			}
			tries++
			if tries > getRetries {
				return fmt.Errorf("no answer after %d retransmissions (block %d)", getRetries, x.expect)
			}
			if err := x.send(x.lastTo, x.last); err != nil {
				return err
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() != x.server.Addr() {
			continue
		}
		if x.tidKnown && from != x.peer {
			// RFC 1350: a packet from a stranger must not end our transfer.
			x.send(from, errorPacket(errCodeUnknownTID, "unknown transfer ID"))
			continue
		}
		done, progressed, err := x.handle(from, buf[:n])
		if err != nil {
			return err
		}
		if progressed {
			tries = 0
		}
		if done {
			return nil
		}
	}
}

// handle processes one packet from the server; progressed reports whether it
// moved the transfer forward (which resets the retransmission budget).
func (x *transfer) handle(from netip.AddrPort, pkt []byte) (done, progressed bool, err error) {
	if len(pkt) < 4 {
		return false, false, nil
	}
	op := binary.BigEndian.Uint16(pkt)
	switch op {
	case opERROR:
		code := int(binary.BigEndian.Uint16(pkt[2:]))
		msg, _, _ := bytes.Cut(pkt[4:], []byte{0})
		return false, false, &TFTPError{Code: code, Msg: string(msg)}

	case opOACK:
		if x.expect != 1 {
			return false, false, nil // a late duplicate
		}
		if x.tidKnown {
			// Our ACK 0 was lost: the server resent its OACK.
			return false, false, x.send(x.peer, ackPacket(0))
		}
		if err := x.parseOACK(pkt[2:]); err != nil {
			x.send(from, errorPacket(errCodeBadOption, err.Error()))
			return false, false, err
		}
		x.peer, x.tidKnown = from, true
		x.last, x.lastTo = ackPacket(0), from
		return false, true, x.send(from, x.last)

	case opDATA:
		block := binary.BigEndian.Uint16(pkt[2:])
		data := pkt[4:]
		if block != x.expect {
			if x.tidKnown && block == x.expect-1 {
				// Our last ACK was lost; repeat it rather than wait.
				return false, false, x.send(x.peer, x.last)
			}
			return false, false, nil
		}
		if !x.tidKnown {
			// The server ignored our options: plain RFC 1350 transfer.
			x.peer, x.tidKnown = from, true
		}
		if len(data) > x.res.Blksize {
			return false, false, fmt.Errorf("block %d has %d bytes, more than blksize %d", block, len(data), x.res.Blksize)
		}
		x.res.Data = append(x.res.Data, data...)
		x.last, x.lastTo = ackPacket(block), from
		x.expect++
		if err := x.send(from, x.last); err != nil {
			return false, false, err
		}
		return len(data) < x.res.Blksize, true, nil
	}
	return false, false, nil
}

// parseOACK applies the server's option acknowledgement, rejecting anything
// we did not ask for or a block size larger than requested (RFC 2347/2348).
func (x *transfer) parseOACK(b []byte) error {
	fields := bytes.Split(bytes.TrimSuffix(b, []byte{0}), []byte{0})
	if len(fields)%2 != 0 {
		return fmt.Errorf("malformed OACK %q", b)
	}
	for i := 0; i < len(fields); i += 2 {
		key, val := strings.ToLower(string(fields[i])), string(fields[i+1])
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return fmt.Errorf("OACK option %s=%q: %w", key, val, err)
		}
		switch {
		case key == "blksize" && x.opts.Blksize > 0:
			if n < 8 || n > int64(x.opts.Blksize) {
				return fmt.Errorf("OACK blksize %d, asked for %d", n, x.opts.Blksize)
			}
			x.res.Blksize = int(n)
		case key == "tsize" && x.opts.Tsize:
			if n < 0 {
				return fmt.Errorf("OACK tsize %d", n)
			}
			x.res.Tsize = n
		default:
			return fmt.Errorf("OACK has option %q we did not ask for", key)
		}
	}
	return nil
}

func rrqPacket(name string, opts GetOptions) []byte {
	p := binary.BigEndian.AppendUint16(nil, opRRQ)
	p = append(append(p, name...), 0)
	p = append(append(p, "octet"...), 0)
	if opts.Blksize > 0 {
		p = append(append(p, "blksize"...), 0)
		p = append(strconv.AppendInt(p, int64(opts.Blksize), 10), 0)
	}
	if opts.Tsize {
		// RFC 2349: a reading client sends tsize 0.
		p = append(append(p, "tsize"...), 0)
		p = append(append(p, '0'), 0)
	}
	return p
}

func ackPacket(block uint16) []byte {
	p := binary.BigEndian.AppendUint16(nil, opACK)
	return binary.BigEndian.AppendUint16(p, block)
}

func errorPacket(code uint16, msg string) []byte {
	p := binary.BigEndian.AppendUint16(nil, opERROR)
	p = binary.BigEndian.AppendUint16(p, code)
	return append(append(p, msg...), 0)
}

// realClientTimeout bounds a curl or tftp-hpa run, so a wedged server fails
// the test instead of hanging it.
const realClientTimeout = 2 * time.Minute

// CurlGet fetches name from the TFTP server at addr with curl, the way a
// firmware-independent real client would; blksize 0 leaves curl's default.
// It skips the test when curl is missing. curl exits 68 when the server
// says the file does not exist: errors.As(err, new(*exec.ExitError)) gives
// the exit code. curl (7.88) always asks for tsize and rejects an OACK
// announcing tsize 0 (exit 71), so it cannot fetch an empty file.
func CurlGet(t testing.TB, addr, name string, blksize int) ([]byte, error) {
	t.Helper()
	curl := RequireTool(t, "curl")
	u := &url.URL{Scheme: "tftp", Host: addr, Path: "/" + name}
	args := []string{"--silent", "--show-error", "--fail", u.String(), "--output", "-"}
	if blksize > 0 {
		args = append(args, "--tftp-blksize", strconv.Itoa(blksize))
	}
	ctx, cancel := context.WithTimeout(t.Context(), realClientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", cmd, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// tftpHPAError matches tftp-hpa's report of an ERROR packet, e.g.
// "Error code 1: File not found".
var tftpHPAError = regexp.MustCompile(`Error code (\d+): ([^\r\n]*)`)

// TFTPHPAGet fetches name from the TFTP server at addr with tftp-hpa's
// client in binary mode. It skips the test when tftp is missing. tftp-hpa
// exits 0 even when the transfer failed, so any output from it counts as a
// failure; an ERROR packet it reports comes back as a wrapped *TFTPError.
func TFTPHPAGet(t testing.TB, addr, name string) ([]byte, error) {
	t.Helper()
	tftp := RequireTool(t, "tftp")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tftp-hpa get %q: parse address %q: %w", name, addr, err)
	}
	local := filepath.Join(t.TempDir(), "download")
	ctx, cancel := context.WithTimeout(t.Context(), realClientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tftp, "-m", "binary", host, port, "-c", "get", name, local)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", cmd, err, bytes.TrimSpace(out))
	}
	if m := tftpHPAError.FindSubmatch(out); m != nil {
		code, _ := strconv.Atoi(string(m[1]))
		return nil, fmt.Errorf("%s: %w", cmd, &TFTPError{Code: code, Msg: string(m[2])})
	}
	if len(bytes.TrimSpace(out)) > 0 {
		return nil, fmt.Errorf("%s: transfer failed: %s", cmd, bytes.TrimSpace(out))
	}
	data, err := os.ReadFile(local)
	if err != nil {
		// Without output and without a file, tftp-hpa failed silently.
		return nil, fmt.Errorf("%s: no downloaded file: %w", cmd, err)
	}
	return data, nil
}
