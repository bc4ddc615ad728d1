package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Nginx is Debian's nginx serving directories over HTTP at addr:80 inside
// a network namespace the test made, as a site would serve the pxebootfs
// mounts: a stock web server, reading through the mount.
type Nginx struct {
	dir string
}

// StartNginx serves each URL prefix of locations ("/tftp/") from its
// directory, with Range requests (nginx's static module), at addr:80 in
// ns; a key "=/PATH" is an exact location whose value names a file and may
// use nginx variables. It returns once nginx answers.
func StartNginx(t testing.TB, ns *NetNS, addr netip.Addr, locations map[string]string) *Nginx {
	t.Helper()
	bin := RequireTool(t, "nginx")
	dir := t.TempDir()
	n := &Nginx{dir: dir}
	var loc strings.Builder
	prefixes := make([]string, 0, len(locations))
	for p := range locations {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	for _, p := range prefixes {
		if exact, ok := strings.CutPrefix(p, "="); ok {
			// An exact location's alias names a file, and may use
			// nginx variables ($remote_addr).
			fmt.Fprintf(&loc, "    location = %s { alias %s; }\n", exact, locations[p])
			continue
		}
		fmt.Fprintf(&loc, "    location %s { alias %s/; }\n", p, strings.TrimRight(locations[p], "/"))
	}
	conf := fmt.Sprintf(`daemon off;
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  default_type application/octet-stream;
  server {
    listen %[2]s:80;
%[3]s  }
}
`, dir, addr, loc.String())
	cfg := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startDaemon(t, "nginx", ns.Command(context.Background(), bin, "-c", cfg, "-p", dir))
	curl := RequireTool(t, "curl")
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ns.Command(context.Background(), curl, "-s", "-o", "/dev/null", "http://"+addr.String()+"/").Run()
		if err == nil {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx at %s did not answer: %v\n%s", addr, err, p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Get fetches url with curl from inside ns (so from an address of ns).
func (n *Nginx) Get(t testing.TB, ns *NetNS, url string) string {
	t.Helper()
	out, err := ns.Command(context.Background(), RequireTool(t, "curl"), "-sf", url).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", url, err)
	}
	return string(out)
}

// AccessLog is what nginx logged of the requests it served.
func (n *Nginx) AccessLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "access.log"))
	return string(b)
}
