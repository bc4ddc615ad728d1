package config

// Role is what a loader's template is for: a node's usual config, its
// config while in install mode, or its config once installed.
type Role int

// Template roles, in the order of LoaderKeys.Templates.
const (
	RoleUsual Role = iota
	RoleInstall
	RoleLocal
	NumRoles
)

func (r Role) String() string {
	switch r {
	case RoleUsual:
		return "usual"
	case RoleInstall:
		return "install"
	case RoleLocal:
		return "local"
	}
	return "unknown"
}

// LoaderKeys names one boot loader's keys, in pxebootfs.cfg and in the
// inventory. The keys are the original tool's and the users' (pxelinux's
// are unprefixed); this table is the one place that says which loader each
// belongs to.
type LoaderKeys struct {
	Loader    string           // the loader's name (internal/loader)
	Mount     string           // its mount point's key; "" when the command line gives it (pxelinux)
	StaticDir string           // its static directory's key
	Templates [NumRoles]string // its templates' keys by role
	Inventory [NumRoles]string // a node's own templates' keys in the inventory, by role
}

// The loader names; internal/loader defines a loader of each.
const (
	LoaderPXELinux = "pxelinux"
	LoaderGRUB     = "grub"
	LoaderIPXE     = "ipxe"
)

var loaderKeys = []LoaderKeys{
	{
		Loader:    LoaderPXELinux,
		StaticDir: "static_dir",
		Templates: [NumRoles]string{"pxe_template", "install_template", "local_template"},
		Inventory: [NumRoles]string{"template", "install_template", "local_template"},
	},
	{
		Loader:    LoaderGRUB,
		Mount:     "grub_mount",
		StaticDir: "grub_static_dir",
		Templates: [NumRoles]string{"grub_template", "grub_install_template", "grub_local_template"},
		Inventory: [NumRoles]string{"grub_template", "grub_install_template", "grub_local_template"},
	},
	{
		Loader:    LoaderIPXE,
		Mount:     "ipxe_mount",
		StaticDir: "ipxe_static_dir",
		Templates: [NumRoles]string{"ipxe_template", "ipxe_install_template", "ipxe_local_template"},
		Inventory: [NumRoles]string{"ipxe_template", "ipxe_install_template", "ipxe_local_template"},
	},
}

// AllLoaderKeys lists every loader's keys, configured or not.
func AllLoaderKeys() []LoaderKeys { return append([]LoaderKeys(nil), loaderKeys...) }

// KeysOf is the keys of the loader named name (zero keys for a name no
// loader has).
func KeysOf(name string) LoaderKeys {
	for _, k := range loaderKeys {
		if k.Loader == name {
			return k
		}
	}
	return LoaderKeys{Loader: name}
}

// LoaderConfig is one boot loader's part of a config: what the catalog
// serving that loader's directory is built from.
type LoaderConfig struct {
	Keys      LoaderKeys
	Mount     string           // absolute; "" for the loader whose mount point the command line gives
	StaticDir string           // "" when unset
	Templates [NumRoles]string // absolute paths; "" when unset (the usual one is always set)
}

// Loader is the part of the config of the loader named name, and whether
// that loader is configured (pxelinux always is; another when its template
// is set: `pxebootfs render` can then render its names, and the daemon
// serves it when its mount key is set too).
func (c *Config) Loader(name string) (LoaderConfig, bool) {
	for _, l := range c.Loaders() {
		if l.Keys.Loader == name {
			return l, true
		}
	}
	return LoaderConfig{}, false
}

// Loaders lists the configured loaders, pxelinux first (see Loader). The values live in
// the Config's fields, one per key as users write them; this is the one
// place that groups them by loader.
func (c *Config) Loaders() []LoaderConfig {
	out := []LoaderConfig{{
		Keys:      loaderKeys[0],
		StaticDir: c.StaticDir,
		Templates: [NumRoles]string{c.PXETemplate, c.InstallTemplate, c.LocalTemplate},
	}}
	if c.GrubTemplate != "" {
		out = append(out, LoaderConfig{
			Keys:      loaderKeys[1],
			Mount:     c.GrubMount,
			StaticDir: c.GrubStaticDir,
			Templates: [NumRoles]string{c.GrubTemplate, c.GrubInstallTemplate, c.GrubLocalTemplate},
		})
	}
	if c.IPXETemplate != "" {
		out = append(out, LoaderConfig{
			Keys:      loaderKeys[2],
			Mount:     c.IPXEMount,
			StaticDir: c.IPXEStaticDir,
			Templates: [NumRoles]string{c.IPXETemplate, c.IPXEInstallTemplate, c.IPXELocalTemplate},
		})
	}
	return out
}
