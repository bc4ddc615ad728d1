package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pxebootfs/pxebootfs/internal/install"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

const installTemplate = "LABEL install\n  APPEND state={{.InstallState}} url={{.CallbackURL}}/done?token={{.InstallToken}} node=<NODE>\n"

var installLine = regexp.MustCompile(`state=(\S+) url=(\S+)/done\?token=([0-9a-f]*) node=`)

// freeLoopbackPort finds a TCP port free on 127.0.0.1 for callback_listen,
// whose callback_url must name it before the daemon starts.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// newInstallSite is a config-only site serving 127.0.0.0/24 with
// install_template and the callback on a free port of 127.0.0.1, whose base
// URL it returns (callback_url is written with a trailing slash, which
// pxebootfs drops).
func newInstallSite(t *testing.T, extra string) (*site, string) {
	t.Helper()
	testenv.RequireTool(t, "curl")
	port := strconv.Itoa(freeLoopbackPort(t))
	base := "http://127.0.0.1:" + port
	s := newSite(t, "allow = 127.0.0.0/24\ninstall_template = install.template\n"+
		"callback_listen = 127.0.0.1:"+port+"\ncallback_url = "+base+"/\n"+extra)
	s.write(filepath.Join(s.dir, "install.template"), installTemplate)
	return s, base
}

// curlFrom calls url with curl bound to source address src, as an
// installer on node src would, and returns the HTTP status.
func curlFrom(t *testing.T, src, method, url string, body []byte) int {
	t.Helper()
	args := []string{"-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "--interface", src, "-X", method}
	if body != nil {
		args = append(args, "--data-binary", "@-")
	}
	cmd := exec.Command("curl", append(args, url)...)
	if body != nil {
		cmd.Stdin = bytes.NewReader(body)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s %s from %s: %v (%s)", method, url, src, err, out)
	}
	code, err := strconv.Atoi(string(out))
	if err != nil {
		t.Fatalf("curl printed %q", out)
	}
	return code
}

// TestInstallCycle runs install mode end to end in config-only mode (an
// install server needs no NFS roots): tftpd-hpa serves the install config
// with the node's token and callback URL, the node's "installer" (curl
// bound to the node's 127.0.0.x address) calls started and done, and the
// next fetch is the built-in local-boot config. A daemon restart in the
// middle changes nothing; refusals change nothing; repeats are harmless.
func TestInstallCycle(t *testing.T) {
	s, base := newInstallSite(t, "install_max_boots = 2\n")
	d := s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	const node, ip = "7F00000B", "127.0.0.11"

	fetch := func() (state, url, token string) {
		t.Helper()
		got, err := getExactTFTP(t, addr, node, testenv.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := installLine.FindStringSubmatch(string(got))
		if m == nil {
			t.Fatalf("not an install config: %q", got)
		}
		return m[1], m[2], m[3]
	}
	nodesOut := func() string {
		out, errOut, code := run(t, "nodes", "-c", s.cfg)
		if code != 0 {
			t.Fatalf("nodes: exit %d: %s", code, errOut)
		}
		return out
	}

	// Before install mode: the usual template.
	if got, err := getExactTFTP(t, addr, node, testenv.GetOptions{}); err != nil || !strings.Contains(string(got), "nfsroot=") {
		t.Fatalf("before install: %q, %v", got, err)
	}
	if out, errOut, code := run(t, "install", "-c", s.cfg, ip); code != 0 || !strings.Contains(out, node+": install mode") {
		t.Fatalf("install: exit %d: %s %s", code, out, errOut)
	}
	state, url, token := fetch()
	if state != "install" || url != base+"/v1/install/"+node || len(token) != 32 {
		t.Fatalf("install config: state %q url %q token %q", state, url, token)
	}
	if strings.Contains(d.stderr.String(), token) {
		t.Fatal("the token is in the daemon's log")
	}
	call := func(src, action, tok string, body []byte) int {
		method := "GET"
		if body != nil {
			method = "POST"
		}
		return curlFrom(t, src, method, url+"/"+action+"?token="+tok, body)
	}
	// Refusals: each changes nothing.
	for _, c := range []struct {
		src, action, token string
		want               int
	}{
		{ip, "done", "00000000000000000000000000000000", 403}, // wrong token
		{"127.0.0.12", "done", token, 403},                    // right token, another address
		{"127.0.0.1", "started", token, 403},                  // the server's own address
		{ip, "reboot", token, 404},                            // no such action
	} {
		if got := call(c.src, c.action, c.token, nil); got != c.want {
			t.Errorf("%s from %s: %d, want %d", c.action, c.src, got, c.want)
		}
	}
	if got := curlFrom(t, "127.0.0.13", "GET", base+"/v1/install/7F00000D/done?token="+token, nil); got != 404 {
		t.Errorf("unknown node: %d, want 404", got)
	}
	if got := curlFrom(t, ip, "GET", base+"/v1/install/", nil); got != 404 {
		t.Errorf("listing: %d, want 404", got)
	}
	if st, _, tok := fetch(); st != "install" || tok != token {
		t.Fatalf("after refusals: state %q token changed %v", st, tok != token)
	}

	if got := call(ip, "started", token, nil); got != 200 {
		t.Fatalf("started: %d", got)
	}
	// A restart in the middle of the install changes nothing.
	if err := d.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}
	d = s.start()
	if st, _, tok := fetch(); st != "installing" || tok != token {
		t.Fatalf("after restart: state %q, same token %v", st, tok == token)
	}
	if got := call(ip, "started", token, nil); got != 200 {
		t.Errorf("repeated started: %d", got)
	}
	if got := call(ip, "done", token, nil); got != 200 {
		t.Fatalf("done: %d", got)
	}
	if got := call(ip, "done", token, nil); got != 200 {
		t.Errorf("repeated done: %d", got)
	}
	if got := call(ip, "started", token, nil); got != 409 {
		t.Errorf("started after done: %d, want 409", got)
	}
	got, err := getExactTFTP(t, addr, node, testenv.GetOptions{})
	if err != nil || !strings.Contains(string(got), "LOCALBOOT 0") || strings.Contains(string(got), token) {
		t.Fatalf("installed node's config: %q, %v", got, err)
	}
	if out := nodesOut(); !regexp.MustCompile(node + `.*installed`).MatchString(out) {
		t.Errorf("nodes after done:\n%s", out)
	}

	// Install again: a new token; the old one stops working.
	if _, errOut, code := run(t, "install", "-c", s.cfg, node); code != 0 {
		t.Fatalf("install again: %s", errOut)
	}
	_, _, token2 := fetch()
	if token2 == token {
		t.Fatal("install again kept the token")
	}
	if got := call(ip, "done", token, nil); got != 403 {
		t.Errorf("old token after a new install: %d, want 403", got)
	}
	// failed keeps install mode and the first 64 KiB of the report.
	report := append([]byte("d-i: no disk found\n"), bytes.Repeat([]byte("x"), 100<<10)...)
	if got := call(ip, "failed", token2, report); got != 200 {
		t.Fatalf("failed: %d", got)
	}
	if st, _, _ := fetch(); st != "install" {
		t.Errorf("after failed: state %q, want install", st)
	}
	saved, err := os.ReadFile(filepath.Join(filepath.Dir(s.dir), "state", install.ReportsDir, node))
	if err != nil || !bytes.Equal(saved, report[:install.MaxReport]) {
		t.Errorf("report: %d bytes, %v; want the first %d", len(saved), err, install.MaxReport)
	}
	if out := nodesOut(); !strings.Contains(out, "installer: d-i: no disk found") {
		t.Errorf("nodes does not show the failure:\n%s", out)
	}
	// Two fetches of the install config since the new install
	// (install_max_boots = 2) without started are legitimate; the third
	// is flagged.
	if out := nodesOut(); regexp.MustCompile(node + `.*install-loop\?`).MatchString(out) {
		t.Errorf("loop flag after 2 fetches:\n%s", out)
	}
	fetch()
	if out := nodesOut(); !regexp.MustCompile(node + `.*install install-loop\?`).MatchString(out) {
		t.Errorf("no loop flag after %d fetches:\n%s", 3, out)
	}
	d.waitLog(t, "possible install loop")
	// installed by hand ends it.
	if out, errOut, code := run(t, "installed", "-c", s.cfg, node); code != 0 || !strings.Contains(out, "installed") {
		t.Fatalf("installed: exit %d: %s %s", code, out, errOut)
	}
	if got, _ := getExactTFTP(t, addr, node, testenv.GetOptions{}); !strings.Contains(string(got), "LOCALBOOT 0") {
		t.Errorf("after installed by hand: %q", got)
	}
	if _, errOut, code := run(t, "install", "-c", s.cfg, "10.0.0.1"); code != exitRefused || !strings.Contains(errOut, "outside allow") {
		t.Errorf("install outside allow: exit %d: %s", code, errOut)
	}
}

// TestInstallThroughGRUB: a UEFI node in install mode is served
// grub_install_template under the GRUB mount, and once installed the
// built-in GRUB twin of the local-boot config (exit: back to the firmware,
// which boots the local disk); install_template serves its pxelinux names
// at the same time, from the same state.
func TestInstallThroughGRUB(t *testing.T) {
	s, base := newInstallSite(t, "grub_install_template = grub-install.template\n")
	s.write(filepath.Join(s.dir, "grub-install.template"), "linux /d-i/linux cb={{.CallbackURL}} token={{.InstallToken}} node=<NODE>\n")
	withGRUB(t, s, "echo usual <NODE>\n")
	s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	const node, ip = "7F00000C", "127.0.0.12"
	grub := func() string {
		t.Helper()
		res, err := testenv.Get(context.Background(), addr, "grub/grub.cfg-"+ip, testenv.GetOptions{Tsize: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Tsize != int64(len(res.Data)) {
			t.Fatalf("tsize %d for %d bytes", res.Tsize, len(res.Data))
		}
		return string(res.Data)
	}
	if got := grub(); got != "echo usual 7F00000C\n" {
		t.Fatalf("before install: %q", got)
	}
	if _, errOut, code := run(t, "install", "-c", s.cfg, node); code != 0 {
		t.Fatalf("install: %s", errOut)
	}
	got := grub()
	m := regexp.MustCompile(`cb=(\S+) token=([0-9a-f]{32}) node=7F00000C`).FindStringSubmatch(got)
	if m == nil || m[1] != base+"/v1/install/"+node {
		t.Fatalf("GRUB install config: %q", got)
	}
	if pxe, err := getExactTFTP(t, addr, node, testenv.GetOptions{}); err != nil || !strings.Contains(string(pxe), "token="+m[2]) {
		t.Fatalf("pxelinux name of the same node: %q, %v", pxe, err)
	}
	if code := curlFrom(t, ip, "POST", m[1]+"/done?token="+m[2], nil); code != 200 {
		t.Fatalf("done: %d", code)
	}
	if got := grub(); !strings.Contains(got, "\nexit\n") || strings.Contains(got, m[2]) {
		t.Fatalf("installed node's GRUB config: %q", got)
	}
}
