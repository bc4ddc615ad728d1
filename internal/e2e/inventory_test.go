package e2e

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

const inventoryTemplate = "LABEL linux\n  APPEND node=<NODE> host={{.Hostname}} role={{index .Vars \"role\"}} mac={{.MAC}} name={{.Name}}\n"

const installerTemplate = "LABEL install\n  APPEND auto=true hostname={{.Hostname}} suite={{.Vars.suite}} node=<NODE> nodedir={{.NodeDir}} fsid={{.FSID}}\n"

// e2eInventory has two nodes the ethers file does not know.
var e2eInventory = testenv.Inventory("installer.template")

// TestInventoryThroughTFTPD serves inventory nodes through tftpd-hpa: MACs
// from the inventory, .Hostname and .Vars, a per-node template, and a
// change to the inventory picked up without a restart.
func TestInventoryThroughTFTPD(t *testing.T) {
	s := newSite(t, "allow = 192.168.0.0/16\ninventory = nodes.ini\n")
	s.write(s.template, inventoryTemplate)
	s.write(filepath.Join(s.dir, "installer.template"), installerTemplate)
	inv := filepath.Join(s.dir, "nodes.ini")
	s.write(inv, e2eInventory)
	d := s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)

	tests := []struct {
		name string
		want string
	}{
		{"01-52-54-00-00-00-05", "LABEL linux\n  APPEND node=C0A80105 host=n5 role=compute mac=52:54:00:00:00:05 name=01-52-54-00-00-00-05\n"},
		{"C0A80105", "LABEL linux\n  APPEND node=C0A80105 host=n5 role=compute mac=52:54:00:00:00:05 name=C0A80105\n"},
		{"01-52-54-00-00-00-16", "LABEL install\n  APPEND auto=true hostname=inst-6 suite=bookworm node=C0A80106 nodedir= fsid=0\n"},
		// Not in the inventory: no host name, no vars.
		{"C0A80102", "LABEL linux\n  APPEND node=C0A80102 host= role= mac=52:54:00:12:34:56 name=C0A80102\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := getExactTFTP(t, addr, tt.name, testenv.GetOptions{Blksize: 1428})
			if err != nil || string(got) != tt.want {
				t.Errorf("TFTP: %q, %v; want %q", got, err, tt.want)
			}
			if got := s.render(tt.name); string(got) != tt.want {
				t.Errorf("render: %q", got)
			}
		})
	}

	// A new node appears without a restart.
	s.write(inv, e2eInventory+"\n[node \"C0A80107\"]\nmac = 52:54:00:00:00:07\nhostname = n7\n")
	want := "LABEL linux\n  APPEND node=C0A80107 host=n7 role= mac=52:54:00:00:00:07 name=01-52-54-00-00-00-07\n"
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := getExactTFTP(t, addr, "01-52-54-00-00-00-07", testenv.GetOptions{})
		if err == nil && string(got) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inventory change not served: %q, %v", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A broken edit is logged with its line; the previous inventory serves.
	s.write(inv, e2eInventory+"\n[node \"C0A80107\"]\nmac = 52:54:00:00:00:07\nhostname = -bad-\n")
	d.waitLog(t, "nodes.ini:16")
	if got, err := getExactTFTP(t, addr, "01-52-54-00-00-00-07", testenv.GetOptions{}); err != nil || string(got) != want {
		t.Errorf("after a broken edit: %q, %v; want the previous inventory's config", got, err)
	}
}

// TestInventoryStartupError: a broken inventory stops the daemon at start
// and `pxebootfs check` names the line.
func TestInventoryStartupError(t *testing.T) {
	s := newSite(t, "inventory = nodes.ini\n")
	s.write(filepath.Join(s.dir, "nodes.ini"), "[node \"C0A80105\"]\nmac = 52:54:00:00:00:05\nmac = 52:54:00:12:34:56\n")
	// 52:54:00:12:34:56 is 192.168.1.2 in the site's ethers.
	// A config problem (issue 10): exit 3, as for mount and render.
	out, _, code := run(t, "check", "-c", s.cfg)
	if code != exitConfig || !strings.Contains(out, "nodes.ini:1") || !strings.Contains(out, "52:54:00:12:34:56") || !strings.Contains(out, "ethers") {
		t.Errorf("check: exit %d:\n%s", code, out)
	}
	_, errOut, code := run(t, "render", "-c", s.cfg, "C0A80105")
	if code != 3 || !strings.Contains(errOut, "nodes.ini:1") {
		t.Errorf("render: exit %d, %q; want 3 naming the line", code, errOut)
	}
}

// TestInventoryProvisionFalse: in full mode, provision = false nodes get
// their config but no overlay, no export and no registry record.
func TestInventoryProvisionFalse(t *testing.T) {
	f := newFullSite(t, "inventory = nodes.ini\n")
	f.write(filepath.Join(f.dir, "installer.template"), installerTemplate)
	f.write(filepath.Join(f.dir, "nodes.ini"), `[node "C0A80102"]
hostname = diskless-2

[node "C0A80103"]
hostname = inst-3
template = installer.template
provision = false
var.suite = trixie

[node "C0A80104"]
provision = false
`)
	f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)

	b, err := fetch(t, addr, "C0A80102")
	n2 := filepath.Join(f.nodes, "C0A80102")
	if err != nil || !bytes.Contains(b, []byte("nfsroot=127.0.0.1:"+n2+" fsid=10000")) {
		t.Errorf("provisioned node: %q, %v", b, err)
	}
	b, err = fetch(t, addr, "C0A80103")
	if want := "LABEL install\n  APPEND auto=true hostname=inst-3 suite=trixie node=C0A80103 nodedir= fsid=0\n"; err != nil || string(b) != want {
		t.Errorf("installer node: %q, %v; want %q", b, err, want)
	}
	b, err = fetch(t, addr, "C0A80104")
	if want := "LABEL linux\n  APPEND root=/dev/nfs nfsroot=127.0.0.1: fsid=0 node=C0A80104\n"; err != nil || string(b) != want {
		t.Errorf("config-only node with pxe_template: %q, %v; want %q", b, err, want)
	}

	exports := f.exports(t)
	mounts := f.overlayMounts(t)
	if _, ok := exports[n2]; !ok || mounts[n2] != 1 {
		t.Errorf("C0A80102 not provisioned: exports %v, mounts %v", exports, mounts)
	}
	for _, node := range []string{"C0A80103", "C0A80104"} {
		p := filepath.Join(f.nodes, node)
		if _, ok := exports[p]; ok || mounts[p] != 0 {
			t.Errorf("%s has an export or overlay though provision = false", node)
		}
	}
	for _, n := range f.registry(t).Nodes {
		if n.Node != "C0A80102" {
			t.Errorf("registry holds %s", n.Node)
		}
	}
}
