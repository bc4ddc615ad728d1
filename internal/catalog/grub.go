package catalog

import (
	"os"
	"path/filepath"

	"github.com/pxebootfs/pxebootfs/internal/pxename"
)

// builtinGrubCfg is served as grub.cfg under the GRUB mount when
// grub_static_dir has none. GRUB 2.06 (Debian 12's grubnetx64.efi) loads
// only $prefix/grub.cfg; it then knows its MAC (colons) and IP (dotted) as
// $net_default_mac and $net_default_ip, which name per-node files
// pxebootfs serves. GRUB 2.12 searches grub.cfg-01-<mac> and grub.cfg-<HEX>
// itself before it gets here. If neither file exists (a node not served)
// it says so and returns to the firmware.
var builtinGrubCfg = []byte(`# Built into pxebootfs: chain to this node's own config.
if [ -n "$net_default_mac" ]; then
	configfile $prefix/grub.cfg-$net_default_mac
fi
if [ -n "$net_default_ip" ]; then
	configfile $prefix/grub.cfg-$net_default_ip
fi
echo "pxebootfs: no GRUB config for mac $net_default_mac ip $net_default_ip"
sleep 5
exit
`)

// StaticSubdir returns the directory of grub_static_dir that name is, for
// the GRUB mount to serve as it is (grub-mknetdir's x86_64-efi/, fonts/).
// Symlinks are not followed; the pxelinux catalog has no subdirectories.
func (c *Catalog) StaticSubdir(name string) (string, bool) {
	s := c.cur.Load()
	if !c.grub || s.staticDir == "" || pxename.CheckStatic(name) != nil {
		return "", false
	}
	p := filepath.Join(s.staticDir, name)
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() {
		return "", false
	}
	return p, true
}
