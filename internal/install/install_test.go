package install

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

var (
	n1 = node.MustParse("127.0.0.11")
	n2 = node.MustParse("127.0.0.12")
)

func newT(t *testing.T) (*Manager, *registry.Registry, *[]node.ID) {
	t.Helper()
	dir := t.TempDir()
	reg, err := registry.Open(registry.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	var changed []node.ID
	m := New(Options{Store: reg, Dir: dir, CallbackURL: "http://127.0.0.1:8770", MaxBoots: 3,
		Changed: func(id node.ID) { changed = append(changed, id) }})
	return m, reg, &changed
}

func state(t *testing.T, reg *registry.Registry, id node.ID) registry.Install {
	t.Helper()
	rec, _ := reg.Get(id)
	return rec.Install
}

// TestCallbacks runs sequences of calls and checks each answer and the
// state after it.
func TestCallbacks(t *testing.T) {
	type call struct {
		src    string
		id     node.ID
		action Action
		token  string // "T1": n1's token; "T2": n2's; "OLD": n1's token before a re-install
		want   int
		state  registry.InstallState // n1's state after the call
	}
	cases := []struct {
		name    string
		reenter bool // run Enter(n1) again before the calls: its old token stops working
		calls   []call
	}{
		{"cycle", false, []call{
			{"127.0.0.11", n1, Started, "T1", 200, registry.InstallRunning},
			{"127.0.0.11", n1, Started, "T1", 200, registry.InstallRunning},
			{"127.0.0.11", n1, Done, "T1", 200, registry.InstallDone},
			{"127.0.0.11", n1, Done, "T1", 200, registry.InstallDone},
			{"127.0.0.11", n1, Started, "T1", 409, registry.InstallDone},
			{"127.0.0.11", n1, Failed, "T1", 409, registry.InstallDone},
		}},
		{"done without started", false, []call{
			{"127.0.0.11", n1, Done, "T1", 200, registry.InstallDone},
		}},
		{"refusals", false, []call{
			{"127.0.0.11", n1, Done, "wrong", 403, registry.InstallPending},
			{"127.0.0.11", n1, Done, "", 403, registry.InstallPending},
			{"127.0.0.12", n1, Done, "T1", 403, registry.InstallPending},
			{"::ffff:127.0.0.12", n1, Done, "T1", 403, registry.InstallPending},
			{"::1", n1, Done, "T1", 403, registry.InstallPending},
			{"127.0.0.11", n1, Done, "T2", 403, registry.InstallPending},
			{"127.0.0.13", node.MustParse("127.0.0.13"), Done, "T1", 404, registry.InstallPending},
			{"127.0.0.99", node.MustParse("127.0.0.99"), Done, "T1", 403, registry.InstallPending}, // outside allow
			{"::ffff:127.0.0.11", n1, Started, "T1", 200, registry.InstallRunning},
		}},
		{"old token", true, []call{
			{"127.0.0.11", n1, Done, "OLD", 403, registry.InstallPending},
			{"127.0.0.11", n1, Done, "T1", 200, registry.InstallDone},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, reg, _ := newT(t)
			m.o.Allowed = func(a netip.Addr) bool { return a != netip.MustParseAddr("127.0.0.99") }
			for _, id := range []node.ID{n1, n2} {
				if err := m.Enter(id, "test"); err != nil {
					t.Fatal(err)
				}
			}
			old := state(t, reg, n1).Token
			if tc.reenter {
				if err := m.Enter(n1, "test"); err != nil {
					t.Fatal(err)
				}
			}
			tokens := map[string]string{"T1": state(t, reg, n1).Token, "T2": state(t, reg, n2).Token, "OLD": old}
			for i, c := range tc.calls {
				tok, ok := tokens[c.token]
				if !ok {
					tok = c.token
				}
				before, _ := reg.Get(n1)
				out := m.Report(netip.MustParseAddr(c.src), c.id, c.action, tok, nil)
				if out.Status != c.want {
					t.Fatalf("call %d (%s %s from %s): %d %q, want %d", i, c.action, c.id, c.src, out.Status, out.Msg, c.want)
				}
				if strings.Contains(out.Msg, tokens["T1"]) {
					t.Fatalf("answer %q holds the token", out.Msg)
				}
				after, _ := reg.Get(n1)
				if after.Install.State != c.state {
					t.Fatalf("call %d: state %q, want %q", i, after.Install.State, c.state)
				}
				if out.Status != 200 && after.Install != before.Install {
					t.Fatalf("call %d answered %d but changed %+v to %+v", i, out.Status, before.Install, after.Install)
				}
			}
			if got := state(t, reg, n2); got.State != registry.InstallPending {
				t.Fatalf("n2 changed: %+v", got)
			}
		})
	}
}

func TestFailedKeepsInstallModeAndReport(t *testing.T) {
	m, reg, changed := newT(t)
	if err := m.Enter(n1, "test"); err != nil {
		t.Fatal(err)
	}
	*changed = nil
	body := []byte("partman: no disk found\n" + strings.Repeat("x", 100<<10))
	out := m.Report(n1.Addr(), n1, Failed, state(t, reg, n1).Token, body)
	if out.Status != 200 {
		t.Fatal(out)
	}
	in := state(t, reg, n1)
	if in.State != registry.InstallPending || in.Error != "partman: no disk found" || in.Failed.IsZero() {
		t.Fatalf("after failed: %+v", in)
	}
	saved, err := os.ReadFile(m.ReportPath(n1))
	if err != nil || len(saved) != MaxReport || string(saved) != string(body[:MaxReport]) {
		t.Fatalf("report: %d bytes, %v; want the first %d", len(saved), err, MaxReport)
	}
	if len(*changed) != 0 {
		t.Errorf("a failure report changed the rendered config: %v", *changed)
	}
	// A new install starts clean.
	if err := m.Enter(n1, "test"); err != nil {
		t.Fatal(err)
	}
	if in := state(t, reg, n1); in.Error != "" {
		t.Fatalf("after a new install: %+v", in)
	}
	if _, err := os.Stat(m.ReportPath(n1)); !os.IsNotExist(err) {
		t.Fatalf("old report kept: %v", err)
	}
}

func TestLoopGuard(t *testing.T) {
	cases := []struct {
		name     string
		served   int
		started  bool // started after the first serving
		wantLoop bool
	}{
		{"below max", 2, false, false},
		// Each serving is counted before that boot's installer can call
		// started: max servings are legitimate, the one after is not.
		{"at max", 3, false, false},
		{"one over max", 4, false, true},
		{"started came", 3, true, false},
		{"installing, no done for max boots", 4, true, false},
		{"installing, no done for more than max boots", 5, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, reg, _ := newT(t)
			if err := m.Enter(n1, "test"); err != nil {
				t.Fatal(err)
			}
			for i := range tc.served {
				m.Served(n1)
				if i == 0 && tc.started {
					if out := m.Report(n1.Addr(), n1, Started, state(t, reg, n1).Token, nil); out.Status != 200 {
						t.Fatal(out)
					}
				}
			}
			if got := m.View(n1).Loop; got != tc.wantLoop {
				t.Fatalf("loop = %v, want %v (%+v)", got, tc.wantLoop, state(t, reg, n1))
			}
		})
	}
}

func TestAdminAndFirstSight(t *testing.T) {
	m, reg, changed := newT(t)
	if err := m.Finish(n1); err == nil {
		t.Fatal("installed of an unknown node succeeded")
	}
	if err := m.FirstSight(n1); err != nil {
		t.Fatal(err)
	}
	v := m.View(n1)
	if v.State != registry.InstallPending || len(v.Token) != 32 || v.CallbackURL != "http://127.0.0.1:8770/v1/install/7F00000B" {
		t.Fatalf("view after first sight: %+v", v)
	}
	tok := v.Token
	if err := m.FirstSight(n1); err != nil || m.View(n1).Token != tok {
		t.Fatalf("a second first sight changed the token: %v", err)
	}
	if err := m.Finish(n1); err != nil {
		t.Fatal(err)
	}
	if err := m.FirstSight(n1); err != nil || m.View(n1).State != registry.InstallDone {
		t.Fatalf("first sight of an installed node reinstalled it: %+v", m.View(n1))
	}
	if out := m.Report(n1.Addr(), n1, Done, tok, nil); out.Status != 200 {
		t.Fatalf("repeated done after installed by hand: %+v", out)
	}
	if err := m.Enter(n1, "test"); err != nil || m.View(n1).Token == tok || m.View(n1).State != registry.InstallPending {
		t.Fatalf("install again: %v %+v", err, m.View(n1))
	}
	if len(*changed) != 3 {
		t.Errorf("changes announced: %v, want 3 (first sight, installed, install)", *changed)
	}
	if rec, _ := reg.Get(n1); rec.FSID != 0 {
		t.Errorf("an install-only node got fsid %d", rec.FSID)
	}
}

func TestHandler(t *testing.T) {
	m, reg, _ := newT(t)
	if err := m.Enter(n1, "test"); err != nil {
		t.Fatal(err)
	}
	tok := state(t, reg, n1).Token
	cases := []struct {
		method, target, remote string
		body                   string
		want                   int
	}{
		{"GET", "/", "127.0.0.11:1000", "", 404},
		{"GET", "/v1/install/", "127.0.0.11:1000", "", 404},
		{"GET", "/v1/install/7F00000B", "127.0.0.11:1000", "", 404},
		{"GET", "/v1/install/7F00000B/reboot?token=" + tok, "127.0.0.11:1000", "", 404},
		{"GET", "/v1/install/7F00000B/done/?token=" + tok, "127.0.0.11:1000", "", 404},
		{"GET", "/v1/install/%37F00000B/done?token=" + tok, "127.0.0.11:1000", "", 404},
		{"GET", "/v1/install/../install/7F00000B/done?token=" + tok, "127.0.0.11:1000", "", 404},
		{"DELETE", "/v1/install/7F00000B/done?token=" + tok, "127.0.0.11:1000", "", 405},
		{"GET", "/v1/install/7F00000B/started?token=" + tok, "127.0.0.12:1000", "", 403},
		{"POST", "/v1/install/7F00000B/failed?token=" + tok, "127.0.0.11:1000", strings.Repeat("y", maxBody+1), 413},
		{"GET", "/v1/install/7f00000b/started?token=" + tok, "127.0.0.11:1000", "", 200},
		{"POST", "/v1/install/7F00000B/done?token=" + tok, "[::ffff:127.0.0.11]:1000", "", 200},
	}
	h := m.Handler()
	for _, c := range cases {
		req := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
		req.RemoteAddr = c.remote
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		if rr.Code != c.want {
			t.Errorf("%s %s from %s: %d %q, want %d", c.method, c.target, c.remote, rr.Code, rr.Body.String(), c.want)
		}
		if strings.Contains(rr.Body.String(), tok) {
			t.Errorf("%s %s: answer holds the token", c.method, c.target)
		}
	}
	if got := state(t, reg, n1).State; got != registry.InstallDone {
		t.Errorf("state %q after the cycle", got)
	}
}

func TestServeTimeouts(t *testing.T) {
	m, _, _ := newT(t)
	s, err := m.Serve("127.0.0.1:0", slogT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if srv := m.server(); srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.ReadHeaderTimeout == 0 || srv.MaxHeaderBytes == 0 {
		t.Fatalf("server without limits: %+v", srv)
	}
	resp, err := http.Get("http://" + s.Addr().String() + "/v1/install/7F000001/done?token=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unknown node from its own address: %d, want 404", resp.StatusCode)
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/v1/install/C0A80102/done", "/v1/install/c0a80102/started", "/v1/install//done", "/v1/install/C0A80102/done/x", "/v1/install/C0A8010/failed", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		id, a, err := ParsePath(p)
		if err != nil {
			return
		}
		// What parses is exactly the canonical path, up to the case of
		// the node's hex digits.
		want := PathPrefix + id.String() + "/" + string(a)
		if !strings.EqualFold(p, want) || !strings.HasPrefix(p, PathPrefix) || !strings.HasSuffix(p, "/"+string(a)) {
			t.Fatalf("ParsePath(%q) = %s, %s", p, id, a)
		}
	})
}
