// Package loader describes each boot loader pxebootfs serves as a value:
// how it names a node's file, what it ships built in, whether its static
// directory is served with subdirectories, and which config keys configure
// it. A catalog is built from one Loader; the daemon holds one catalog per
// configured loader. Adding a loader is adding one value to All (and its
// keys to config's loader table), not branches in the request path.
package loader

import (
	"fmt"
	"strings"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/pxename"
	"github.com/pxebootfs/pxebootfs/internal/render"
)

// Loader is one boot loader's rules. Immutable.
type Loader struct {
	// Name is config's loader name (config.LoaderPXELinux, …); its keys
	// are config.LoaderKeys with that name.
	Name string
	// Prefix is put before a node's hex IP to name its file in a listing
	// ("grub.cfg-" for GRUB).
	Prefix string
	// Parse classifies a name asked for in the loader's directory:
	// pxename.KindIP and KindMAC are nodes; anything else (ErrNotNode) may
	// still be a static, built-in or generated file.
	Parse func(name string) (pxename.Name, error)
	// Builtins are files served when the static directory has none of
	// that name (GRUB's grub.cfg).
	Builtins map[string][]byte
	// StaticSubdirs: the static directory's subdirectories are served as
	// they are (GRUB's x86_64-efi/, fonts/).
	StaticSubdirs bool
	// Local is the config of an installed node when the local template is
	// unset.
	Local *render.Template
}

// PXELinux is pxelinux (BIOS): pxelinux.cfg/<UUID>, 01-<mac>, <HEX>…
var PXELinux = &Loader{
	Name:  config.LoaderPXELinux,
	Parse: pxename.Parse,
	Local: mustParse("built-in local_template", `# pxebootfs: node <NODE> is installed; boot from the local disk.
DEFAULT local
LABEL local
	LOCALBOOT 0
`),
}

// GRUB is GRUB's network prefix directory (UEFI): grub.cfg-<node>, a
// built-in grub.cfg and grub-mknetdir's module tree.
var GRUB = &Loader{
	Name:          config.LoaderGRUB,
	Prefix:        pxename.GRUBPrefix,
	Parse:         pxename.ParseGRUB,
	Builtins:      map[string][]byte{"grub.cfg": builtinGrubCfg},
	StaticSubdirs: true,
	Local: mustParse("built-in grub_local_template", `# pxebootfs: node <NODE> is installed; back to the firmware, which boots the local disk.
exit
`),
}

// IPXE is iPXE's scripts, served by a stock web server from the iPXE
// mount: <HEX> (upper or lower case), 01-<mac>, or the dotted IPv4.
var IPXE = &Loader{
	Name:  config.LoaderIPXE,
	Parse: pxename.ParseIPXE,
	Local: mustParse("built-in ipxe_local_template", `#!ipxe
# pxebootfs: node <NODE> is installed; back to the firmware, which boots the local disk.
exit
`),
}

// Owns reports whether name is one of this loader's own names: a node
// name with its prefix, or one of its built-in files. pxelinux, with no
// prefix, owns every name; `pxebootfs render` asks the loaders with a
// prefix first.
func (l *Loader) Owns(name string) bool {
	if _, ok := l.Builtins[name]; ok {
		return true
	}
	return strings.HasPrefix(name, l.Prefix)
}

// All lists every loader, pxelinux first.
var All = []*Loader{PXELinux, GRUB, IPXE}

// ByName returns the loader named name.
func ByName(name string) (*Loader, error) {
	for _, l := range All {
		if l.Name == name {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no boot loader named %q", name)
}

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

func mustParse(name, src string) *render.Template {
	t, err := render.Parse(name, []byte(src))
	if err != nil {
		panic(err)
	}
	return t
}
