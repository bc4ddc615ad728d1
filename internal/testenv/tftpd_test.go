package testenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// pattern returns n bytes that differ from block to block, so a dropped,
// repeated or reordered block shows up as a mismatch.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// writeTFTPRoot fills root with world-readable files (tftpd-hpa serves no
// others) around the 512-byte block edges, and returns them by name.
func writeTFTPRoot(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{"pxelinux.cfg/default": []byte("DEFAULT local\n")}
	for _, n := range []int{0, 1, 511, 512, 513, 100000} {
		files[fmt.Sprintf("size-%d", n)] = pattern(n)
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		// WriteFile's mode is subject to the umask.
		if err := errors.Join(os.Chmod(filepath.Dir(p), 0o755), os.Chmod(p, 0o644)); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func TestTFTPD(t *testing.T) {
	RequireRoot(t)
	root := t.TempDir()
	files := writeTFTPRoot(t, root)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range files {
			if !yield(n) {
				return
			}
		}
	})
	addr := StartTFTPD(t, root)

	t.Run("Get", func(t *testing.T) {
		optsTable := []struct {
			name string
			opts GetOptions
		}{
			{"plain", GetOptions{}},
			{"blksize", GetOptions{Blksize: 1428}},
			{"tsize", GetOptions{Tsize: true}},
			{"blksize+tsize", GetOptions{Blksize: 1428, Tsize: true}},
		}
		for _, name := range names {
			for _, tc := range optsTable {
				t.Run(name+"/"+tc.name, func(t *testing.T) {
					res, err := Get(t.Context(), addr, name, tc.opts)
					if err != nil {
						t.Fatal(err)
					}
					want := files[name]
					if !bytes.Equal(res.Data, want) {
						t.Fatalf("got %d bytes, want %d (contents differ)", len(res.Data), len(want))
					}
					wantTsize := int64(-1)
					if tc.opts.Tsize {
						wantTsize = int64(len(want))
					}
					if res.Tsize != wantTsize {
						t.Errorf("tsize %d, want %d", res.Tsize, wantTsize)
					}
					wantBlksize := defaultBlksize
					if tc.opts.Blksize > 0 {
						wantBlksize = tc.opts.Blksize
					}
					if res.Blksize != wantBlksize {
						t.Errorf("blksize %d, want %d", res.Blksize, wantBlksize)
					}
				})
			}
		}
	})

	t.Run("Curl", func(t *testing.T) {
		for _, name := range names {
			if len(files[name]) == 0 {
				// curl (7.88) asks for tsize and then rejects the OACK
				// announcing tsize 0 (exit 71), so it cannot fetch an
				// empty file; the other clients cover that case.
				continue
			}
			for _, blksize := range []int{0, 1428} {
				t.Run(fmt.Sprintf("%s/blksize=%d", name, blksize), func(t *testing.T) {
					got, err := CurlGet(t, addr, name, blksize)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, files[name]) {
						t.Fatalf("got %d bytes, want %d (contents differ)", len(got), len(files[name]))
					}
				})
			}
		}
	})

	t.Run("TFTPHPA", func(t *testing.T) {
		for _, name := range names {
			t.Run(name, func(t *testing.T) {
				got, err := TFTPHPAGet(t, addr, name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, files[name]) {
					t.Fatalf("got %d bytes, want %d (contents differ)", len(got), len(files[name]))
				}
			})
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		const missing = "pxelinux.cfg/C0A80102"
		tests := []struct {
			name string
			get  func(t *testing.T) error
		}{
			{"Get", func(t *testing.T) error {
				_, err := Get(t.Context(), addr, missing, GetOptions{})
				return err
			}},
			{"GetOptions", func(t *testing.T) error {
				_, err := Get(t.Context(), addr, missing, GetOptions{Blksize: 1428, Tsize: true})
				return err
			}},
			{"TFTPHPA", func(t *testing.T) error {
				_, err := TFTPHPAGet(t, addr, missing)
				return err
			}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.get(t)
				var te *TFTPError
				if !errors.As(err, &te) || te.Code != 1 {
					t.Fatalf("got error %v, want a TFTPError with code 1 (file not found)", err)
				}
			})
		}
		t.Run("Curl", func(t *testing.T) {
			_, err := CurlGet(t, addr, missing, 0)
			var ee *exec.ExitError
			// curl's exit code 68 is "TFTP: file not found".
			if !errors.As(err, &ee) || ee.ExitCode() != 68 {
				t.Fatalf("got error %v, want curl exit code 68", err)
			}
		})
	})

	t.Run("Concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 32 {
			name := names[i%len(names)]
			opts := GetOptions{Tsize: i%2 == 0}
			if i%4 < 2 {
				opts.Blksize = 1428
			}
			wg.Go(func() {
				res, err := Get(t.Context(), addr, name, opts)
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				if !bytes.Equal(res.Data, files[name]) {
					t.Errorf("client %d: %s: got %d bytes, want %d (contents differ)", i, name, len(res.Data), len(files[name]))
				}
				if opts.Tsize && res.Tsize != int64(len(files[name])) {
					t.Errorf("client %d: %s: tsize %d, want %d", i, name, res.Tsize, len(files[name]))
				}
			})
		}
		wg.Wait()
	})
}

// tftpdProcesses lists in.tftpd processes listening on addr, as pgrep sees
// them (a forked child shares its parent's command line).
func tftpdProcesses(t *testing.T, addr string) string {
	t.Helper()
	pgrep := RequireTool(t, "pgrep")
	pat := `in\.tftpd .*-a ` + regexp.QuoteMeta(addr) + `( |$)`
	cmd := exec.Command(pgrep, "-a", "-f", "--", pat)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return "" // nothing matched
	}
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return strings.TrimSpace(string(out))
}

// TestStartTFTPDCleanup checks that the server and a child still busy with
// an abandoned transfer are gone when the test that started them ends, and
// that the log socket is removed from the root.
func TestStartTFTPDCleanup(t *testing.T) {
	RequireRoot(t)
	root := t.TempDir()
	files := writeTFTPRoot(t, root)
	var addr string
	t.Run("server", func(t *testing.T) {
		addr = StartTFTPD(t, root)
		fi, err := os.Stat(root)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o005 != 0o005 {
			t.Errorf("root mode %v, want others to read and search it", fi.Mode().Perm())
		}

		// Start a transfer and walk away: the child serving it keeps
		// retransmitting, as pxelinux's abandoned requests do.
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		server, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteToUDP(rrqPacket("size-100000", GetOptions{}), server); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 600)
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n < 4 || binary.BigEndian.Uint16(buf) != opDATA {
			t.Fatalf("got packet %x, want DATA", buf[:n])
		}

		procs := tftpdProcesses(t, addr)
		if strings.Count(procs, "\n")+1 < 2 {
			t.Errorf("want the server and a busy child running, pgrep found:\n%s", procs)
		}
		if res, err := Get(t.Context(), addr, "size-513", GetOptions{Tsize: true}); err != nil {
			t.Error(err)
		} else if !bytes.Equal(res.Data, files["size-513"]) || res.Tsize != 513 {
			t.Errorf("got %d bytes, tsize %d; want 513", len(res.Data), res.Tsize)
		}
	})
	if addr == "" {
		t.Fatal("server did not start")
	}
	if procs := tftpdProcesses(t, addr); procs != "" {
		t.Errorf("in.tftpd processes left after the test ended:\n%s", procs)
	}
	if _, err := os.Lstat(filepath.Join(root, "dev")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("log socket directory left in the root: %v", err)
	}
}

func TestGetRejectsNonLoopback(t *testing.T) {
	tests := []string{"192.0.2.1:69", "[2001:db8::1]:69", "localhost:69"}
	for _, addr := range tests {
		t.Run(addr, func(t *testing.T) {
			if _, err := Get(t.Context(), addr, "x", GetOptions{}); err == nil {
				t.Fatal("got no error")
			}
		})
	}
}

// TestGetRetransmits runs Get against a fake server that loses the first
// request and the first ACK, and ignores the options, as old firmware-era
// servers do.
func TestGetRetransmits(t *testing.T) {
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	main, tid := listen(), listen()
	want := pattern(512 + 3)

	var rrqs, acks1 int
	served := make(chan error, 1)
	go func() {
		served <- func() error {
			buf := make([]byte, 1024)
			var client *net.UDPAddr
			for rrqs < 2 {
				n, from, err := main.ReadFromUDP(buf)
				if err != nil {
					return err
				}
				if n >= 2 && binary.BigEndian.Uint16(buf) == opRRQ {
					rrqs++
					client = from
				}
			}
			data := func(block uint16, b []byte) []byte {
				p := binary.BigEndian.AppendUint16(nil, opDATA)
				return append(binary.BigEndian.AppendUint16(p, block), b...)
			}
			if _, err := tid.WriteToUDP(data(1, want[:512]), client); err != nil {
				return err
			}
			for {
				n, _, err := tid.ReadFromUDP(buf)
				if err != nil {
					return err
				}
				if n != 4 || binary.BigEndian.Uint16(buf) != opACK {
					return fmt.Errorf("got packet %x, want ACK", buf[:n])
				}
				switch block := binary.BigEndian.Uint16(buf[2:]); {
				case block == 1:
					acks1++
					if acks1 == 2 { // the first one is "lost"
						if _, err := tid.WriteToUDP(data(2, want[512:]), client); err != nil {
							return err
						}
					}
				case block == 2:
					return nil
				}
			}
		}()
	}()

	res, err := Get(t.Context(), main.LocalAddr().String(), "f", GetOptions{Blksize: 1428, Tsize: true, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("fake server: %v", err)
	}
	if !bytes.Equal(res.Data, want) {
		t.Errorf("got %d bytes, want %d (contents differ)", len(res.Data), len(want))
	}
	if res.Tsize != -1 || res.Blksize != defaultBlksize {
		t.Errorf("got tsize %d blksize %d, want -1 and %d when the server ignores options", res.Tsize, res.Blksize, defaultBlksize)
	}
	if rrqs < 2 || acks1 < 2 {
		t.Errorf("server saw %d requests and %d ACKs of block 1, want retransmissions of both", rrqs, acks1)
	}
}

// TestStartTFTPDPortTaken checks the case StartTFTPD retries on: the port it
// picked was taken before in.tftpd could bind it.
func TestStartTFTPDPortTaken(t *testing.T) {
	RequireRoot(t)
	bin, err := tftpdVersion()
	if err != nil {
		Skip(t, err.Error())
	}
	holder, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	port := holder.LocalAddr().(*net.UDPAddr).Port
	root := t.TempDir()
	makeTraversable(t, root, "nobody")

	srv, err := startTFTPD(bin, "nobody", root, port, &logBuffer{})
	if err == nil {
		srv.stop()
		t.Fatal("started on a taken port")
	}
	if procs := tftpdProcesses(t, fmt.Sprintf("127.0.0.1:%d", port)); procs != "" {
		t.Errorf("in.tftpd processes left after a failed start:\n%s", procs)
	}
}
