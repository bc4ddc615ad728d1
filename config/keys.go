package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/roots"
	"github.com/pxebootfs/pxebootfs/nfsexport"
	"github.com/pxebootfs/pxebootfs/overlay"
)

// keySpec is one accepted key. parse gets the trimmed, non-empty value (or
// def when the key is unset) and fills the Config; the returned *Error needs
// only Reason (and Err), Parse adds file and key.
type keySpec struct {
	name     string
	doc      string
	def      string // default; "" means unset stays unset
	example  string
	required bool
	full     bool // belongs to full mode
	// reload: a running daemon's reload may change it (the catalog's
	// snapshot and the reset policy are swapped atomically). Every other
	// key is fixed until a restart, so a key added later is safe by
	// default.
	reload bool
	// needs is a key that must be set when this one is (needsWhy says
	// why): checked once for all keys, after they are parsed.
	needs, needsWhy string
	parse           func(p *parser, v string) *Error
}

// Defaults, exported so help output and the lead's code agree with the table.
const (
	DefaultStateDir      = "/var/lib/pxebootfs"
	DefaultMaxNodes      = 1024
	DefaultOverlayType   = OverlayFS
	DefaultExport        = ExportFS
	DefaultExportOptions = nfsexport.DefaultOptions
	DefaultGaneshaConfig = "/etc/ganesha/pxebootfs.conf"
	DefaultResetGuard    = 300 * time.Second
)

// fullModeKeys turn on full mode; they must be set together, with a root
// for the nodes: root_dir, or roots_dir and root (checkRootSource).
var fullModeKeys = []string{"node_dir", "overlay_dir", "start_fsid"}

var keys = []keySpec{
	pathKey(keySpec{name: "pxe_template", reload: true, required: true, example: "pxelinux.cfg.template",
		doc: "Template every node's pxelinux config is rendered from."},
		func(c *Config) *string { return &c.PXETemplate }, readableFile),
	pathKey(keySpec{name: "static_dir", reload: true, example: "/srv/tftp/pxelinux.static",
		doc: "Directory of hand-written files (menus, default) served as they are under pxelinux.cfg."},
		func(c *Config) *string { return &c.StaticDir }, existingDir),
	pathKey(keySpec{name: "ethers", reload: true, example: "/etc/ethers",
		doc: "ethers(5) file mapping MAC addresses to IPv4 addresses, to serve 01-<mac> names."},
		func(c *Config) *string { return &c.Ethers }, readableFile),
	{
		name: "allow", reload: true, example: "192.168.1.0/24, 10.0.0.5",
		doc: "Comma-separated IPv4 prefixes (a bare address means /32) of nodes to serve.",
		parse: func(p *parser, v string) *Error {
			prefixes, e := parseAllow(v)
			p.c.Allow = prefixes
			return e
		},
	},
	pathKey(keySpec{name: "content_generator", example: "/usr/local/sbin/pxe-content-generator",
		doc: "Program run (atftpd's --content-generator interface) for names nothing else serves; it writes the file's content to fd 3."},
		func(c *Config) *string { return &c.ContentGenerator }, executableFile),
	boolKey(keySpec{name: "generator_for_nodes", def: "false", needs: "content_generator", needsWhy: generatorWhy,
		doc: "true: run content_generator for node names too, before the template; the template serves the names it refuses."},
		func(c *Config) *bool { return &c.GeneratorForNodes }),
	durationKey(keySpec{name: "generator_timeout", def: DefaultGeneratorTimeout.String(), needs: "content_generator", needsWhy: generatorWhy,
		doc: "Longest content_generator run (then it is killed with its process group and the name is not found), and longest wait for a free slot."},
		func(c *Config) *time.Duration { return &c.GeneratorTimeout }),
	durationKey(keySpec{name: "generator_ttl", def: DefaultGeneratorTTL.String(), needs: "content_generator", needsWhy: generatorWhy,
		doc: "How long a content_generator result is reused for its name (a refusal: 1 s at most), so a lookup and the reads after it run the program once."},
		func(c *Config) *time.Duration { return &c.GeneratorTTL }),
	{
		name: "generator_concurrency", def: strconv.Itoa(DefaultGeneratorConcurrency), needs: "content_generator", needsWhy: generatorWhy,
		doc: "Most content_generator programs running at once; further names wait (at most generator_timeout).",
		parse: func(p *parser, v string) *Error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxGeneratorConcurrency {
				return &Error{Reason: fmt.Sprintf("%q is not an integer from 1 to %d", v, maxGeneratorConcurrency)}
			}
			p.c.GeneratorConcurrency = n
			return nil
		},
	},
	pathKey(keySpec{name: "inventory", reload: true, example: "/etc/pxebootfs/nodes.ini",
		doc: "Node inventory (INI, one [node \"NAME\"] section per node): MACs, hostname, per-node template, provision, var.NAME."},
		func(c *Config) *string { return &c.Inventory }, readableFile),
	pathKey(keySpec{name: "node_dir", full: true, example: "/srv/pxebootfs/nodes",
		doc: "Directory holding each node's root (node_dir/NODE), the path exported over NFS. Created if missing."},
		func(c *Config) *string { return &c.NodeDir }, dirIfExists),
	pathKey(keySpec{name: "root_dir", full: true, example: "/srv/pxebootfs/root",
		doc: "The read-only golden root every node's overlay is layered on. Must exist."},
		func(c *Config) *string { return &c.RootDir }, existingDir),
	pathKey(keySpec{name: "roots_dir", full: true, example: "/srv/pxebootfs/roots",
		doc: "Where named roots keep their immutable generations (roots_dir/NAME/GEN, made by `pxebootfs root import`). Created if missing."},
		func(c *Config) *string { return &c.RootsDir }, dirIfExists),
	{
		name: "root", full: true, needs: "roots_dir", needsWhy: "a named root lives in roots_dir", example: "debian",
		doc: "The root new nodes (and reset ones) get: its current generation. Inventory nodes may name another (root = NAME). Default: root_dir.",
		parse: func(p *parser, v string) *Error {
			if err := roots.CheckName(v); err != nil {
				return &Error{Reason: err.Error()}
			}
			p.c.Root = v
			return nil
		},
	},
	intKey(keySpec{name: "root_keep", def: "2",
		doc: "How many newest generations of each root garbage collection always keeps (besides current and pinned ones)."},
		func(c *Config) *int { return &c.RootKeep }),
	secondsKey(keySpec{name: "root_grace", def: "3600",
		doc: "Seconds a generation stays after it stopped being current, unless a node is pinned to it (then it stays as long as one is)."},
		func(c *Config) *time.Duration { return &c.RootGrace }),
	pathKey(keySpec{name: "overlay_dir", full: true, example: "/srv/pxebootfs/overlay",
		doc: "Directory holding each node's writable layer (upper and work dirs). Created if missing."},
		func(c *Config) *string { return &c.OverlayDir }, dirIfExists),
	{
		name: "start_fsid", full: true, example: "1000",
		doc: "First NFS fsid handed to nodes, 1 to 4294967295 (0 is NFSv4's root); keep ranges of servers sharing clients apart.",
		parse: func(p *parser, v string) *Error {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return &Error{Reason: fmt.Sprintf("%q is not an integer from 1 to %d (0 is the NFSv4 root fsid)", v, uint32(math.MaxUint32))}
			}
			p.c.StartFSID = uint32(n)
			return nil
		},
	},
	pathKey(keySpec{name: "state_dir", def: DefaultStateDir,
		doc: "Directory where pxebootfs records its nodes (fsids, MACs, install states) across restarts, and where the control socket lives. Created if missing."},
		func(c *Config) *string { return &c.StateDir }, dirIfExists),
	intKey(keySpec{name: "max_nodes", full: true, def: strconv.Itoa(DefaultMaxNodes),
		doc: "Most nodes given a root; requests from further nodes fail instead of filling the disk."},
		func(c *Config) *int { return &c.MaxNodes }),
	{
		name: "overlay_type", full: true, def: DefaultOverlayType,
		doc: "Union filesystem for node roots: overlayfs or aufs.",
		parse: func(p *parser, v string) *Error {
			t, err := overlay.ParseType(v)
			if err != nil {
				return &Error{Reason: err.Error()}
			}
			p.c.OverlayType = string(t)
			return nil
		},
	},
	{
		name: "overlay_options", full: true, example: "redirect_dir=on",
		doc: "Comma-separated extra mount options for node overlays; pxebootfs sets the layer directories itself.",
		parse: func(p *parser, v string) *Error {
			opts, e := splitOptions(v)
			if e != nil {
				return e
			}
			for _, o := range opts {
				name := strings.TrimSuffix(optionName(o, "=:"), "+")
				switch strings.ToLower(name) {
				case "lowerdir", "upperdir", "workdir", "datadir", "br", "dirs":
					return &Error{Reason: fmt.Sprintf("option %q sets the layer directories, which pxebootfs owns", o)}
				}
			}
			// The rest of the rules are overlay's, which Mount applies.
			if err := overlay.CheckOptions(overlay.Type(p.c.OverlayType), opts); err != nil {
				return &Error{Reason: err.Error()}
			}
			p.c.OverlayOptions = opts
			return nil
		},
	},
	{
		name: "export", full: true, def: DefaultExport,
		doc: "How node roots are exported: exportfs (kernel NFS server), ganesha (NFS-Ganesha, over D-Bus) or none (export them yourself).",
		parse: func(p *parser, v string) *Error {
			if v != ExportFS && v != ExportGanesha && v != ExportNone {
				return &Error{Reason: fmt.Sprintf("%q is not one of %s, %s, %s", v, ExportFS, ExportGanesha, ExportNone)}
			}
			p.c.Export = v
			return nil
		},
	},
	{
		name: "export_options", full: true, def: DefaultExportOptions,
		doc: "exportfs options for each node's export; pxebootfs adds fsid= itself.",
		parse: func(p *parser, v string) *Error {
			opts, e := splitOptions(v)
			if e != nil {
				return e
			}
			for _, o := range opts {
				if strings.EqualFold(optionName(o, "="), "fsid") {
					return &Error{Reason: fmt.Sprintf("option %q: pxebootfs sets each node's fsid itself (see start_fsid)", o)}
				}
			}
			p.c.ExportOptions = strings.Join(opts, ",")
			return nil
		},
	},
	pathKey(keySpec{name: "ganesha_config", full: true, def: DefaultGaneshaConfig,
		doc: "export = ganesha: the include file pxebootfs owns, one EXPORT block per node; Ganesha's main config needs the line %include \"FILE\"."},
		func(c *Config) *string { return &c.GaneshaConfig }, ganeshaConfigFile),
	{
		name: "ganesha_dbus", full: true, example: "unix:path=/run/dbus/system_bus_socket",
		doc: "export = ganesha: D-Bus address of the bus Ganesha's export manager is on. Default: the system bus.",
		parse: func(p *parser, v string) *Error {
			if !strings.Contains(v, ":") || strings.IndexFunc(v, isSpace) >= 0 {
				return &Error{Reason: fmt.Sprintf("%q is not a D-Bus address such as unix:path=/run/dbus/system_bus_socket", v)}
			}
			p.c.GaneshaDBus = v
			return nil
		},
	},
	secondsKey(keySpec{name: "reset_guard", reload: true, full: true, def: strconv.Itoa(int(DefaultResetGuard / time.Second)),
		doc: "Seconds after a node's last boot during which `pxebootfs reset` refuses it (unless -force) and reset_on_boot does not wipe it again."},
		func(c *Config) *time.Duration { return &c.ResetGuard }),
	boolKey(keySpec{name: "reset_on_boot", reload: true, full: true, def: "false",
		doc: "true: a node's writable layer is wiped when it fetches its config again at least reset_guard seconds after its last boot, so it starts clean on every boot."},
		func(c *Config) *bool { return &c.ResetOnBoot }),
	pathKey(keySpec{name: "grub_mount", example: "/srv/tftp/grub", needs: "grub_template", needsWhy: "the template of per-node GRUB configs",
		doc: "GRUB's prefix directory in the TFTP root, mounted over by `pxebootfs mount` beside pxelinux.cfg, to serve UEFI nodes' grub.cfg-<node> files. Default: unset (no GRUB mount)."},
		func(c *Config) *string { return &c.GrubMount }, mountPoint),
	pathKey(keySpec{name: "grub_template", example: "grub.cfg.template",
		doc: "Template every node's GRUB config is rendered from (needed with grub_mount)."},
		func(c *Config) *string { return &c.GrubTemplate }, readableFile),
	pathKey(keySpec{name: "grub_static_dir", example: "/srv/tftp/grub.static",
		doc: "Directory served as it is under the GRUB mount, subdirectories included (grub-mknetdir's x86_64-efi/, fonts/, grub.cfg); symlinks are not followed. Without a grub.cfg in it, a built-in one chains to grub.cfg-$net_default_mac and grub.cfg-$net_default_ip."},
		func(c *Config) *string { return &c.GrubStaticDir }, existingDir),
	pathKey(keySpec{name: "ipxe_mount", example: "/srv/http/ipxe", needs: "ipxe_template", needsWhy: "the template of per-node iPXE scripts",
		doc: "Directory mounted over by `pxebootfs mount` beside pxelinux.cfg, for a web server (nginx, lighttpd, Apache) to serve iPXE nodes their scripts: <HEX> (upper or lower case), 01-<mac>, or the dotted IPv4. Default: unset (no iPXE mount)."},
		func(c *Config) *string { return &c.IPXEMount }, mountPoint),
	pathKey(keySpec{name: "ipxe_template", example: "node.ipxe.template",
		doc: "Template every node's iPXE script is rendered from (needed with ipxe_mount)."},
		func(c *Config) *string { return &c.IPXETemplate }, readableFile),
	pathKey(keySpec{name: "ipxe_static_dir", example: "/srv/http/ipxe.static",
		doc: "Directory served as it is under the iPXE mount (e.g. boot.ipxe, which chains to a node's script)."},
		func(c *Config) *string { return &c.IPXEStaticDir }, existingDir),
	{
		name: "http_base", example: "http://192.0.2.1/tftp/",
		doc: "URL at which a web server serves tftp_root, for {{imageURL \"NAME\" \"FILE\"}} and .HTTPBase in templates (kernels and initrds over HTTP).",
		parse: func(p *parser, v string) *Error {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
				return &Error{Reason: fmt.Sprintf("%q is not an http:// or https:// URL with a host and no user, query or fragment", v)}
			}
			p.c.HTTPBase = strings.TrimRight(v, "/") + "/"
			return nil
		},
	},
	pathKey(keySpec{name: "tftp_root", example: "/srv/tftp",
		doc: "The tftpd's root directory. Needed for boot images (`pxebootfs image`), which the tftpd serves from images_dir inside it."},
		func(c *Config) *string { return &c.TFTPRoot }, existingDir),
	pathKey(keySpec{name: "images_dir", example: "/srv/tftp/images",
		doc: "Where boot image versions are kept, inside tftp_root and outside the FUSE mount. Default: tftp_root/images."},
		func(c *Config) *string { return &c.ImagesDir }, dirIfExists),
	intKey(keySpec{name: "image_keep", def: "3",
		doc: "How many newest versions of each image garbage collection always keeps."},
		func(c *Config) *int { return &c.ImageKeep }),
	secondsKey(keySpec{name: "image_grace", def: "3600",
		doc: "Seconds a version stays after a config naming it was last served (or after it stopped being current), so a booting node always finds its kernel and initrd."},
		func(c *Config) *time.Duration { return &c.ImageGrace }),
	templateKey("install_template", "install.template", "Template of the pxelinux config of nodes in install mode (`pxebootfs install`); it sees .InstallToken and .CallbackURL. Default: unset (no pxelinux install config).", func(c *Config) *string { return &c.InstallTemplate }),
	templateKey("local_template", "local.template", "Template of the pxelinux config of installed nodes. Default: built in, boots the local disk (LOCALBOOT 0).", func(c *Config) *string { return &c.LocalTemplate }),
	templateKey("grub_install_template", "grub-install.template", "GRUB twin of install_template, served under grub_mount to nodes in install mode. Default: unset.", func(c *Config) *string { return &c.GrubInstallTemplate }),
	templateKey("grub_local_template", "grub-local.template", "GRUB twin of local_template. Default: built in, `exit` (the firmware boots the next entry, the local disk).", func(c *Config) *string { return &c.GrubLocalTemplate }),
	templateKey("ipxe_install_template", "install.ipxe.template", "iPXE twin of install_template, served under ipxe_mount to nodes in install mode. Default: unset.", func(c *Config) *string { return &c.IPXEInstallTemplate }),
	templateKey("ipxe_local_template", "local.ipxe.template", "iPXE twin of local_template. Default: built in, `exit` (the firmware boots the next entry, the local disk).", func(c *Config) *string { return &c.IPXELocalTemplate }),
	needs(listenKey("callback_listen", "0.0.0.0:8770", "host:port of the HTTP endpoint installers call at /v1/install/NODE/{started,done,failed}?token=TOKEN. Default: unset (no callback; end install mode with `pxebootfs installed`).", func(c *Config) *string { return &c.CallbackListen }),
		"callback_url", "the address nodes reach this server by, e.g. http://192.0.2.1:8770"),
	{
		name: "callback_url", example: "http://192.0.2.1:8770",
		doc: "Base URL by which nodes reach callback_listen (templates get .CallbackURL = this + /v1/install/NODE); required with callback_listen.",
		parse: func(p *parser, v string) *Error {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
				return &Error{Reason: fmt.Sprintf("%q is not an http:// or https:// URL with a host and no user, query or fragment", v)}
			}
			p.c.CallbackURL = strings.TrimRight(v, "/")
			return nil
		},
	},
	intKey(keySpec{name: "install_max_boots", def: "3",
		doc: "How many servings of a node's install config without its installer calling started are legitimate; the next one reports a possible install loop (log, `pxebootfs nodes`, metric)."},
		func(c *Config) *int { return &c.InstallMaxBoots }),
	needs(keySpec{
		name: "cluster_endpoints", example: "http://192.0.2.10:2379,http://192.0.2.11:2379,http://192.0.2.12:2379",
		doc: "Cluster mode: etcd client URLs, comma-separated. Several pxebootfs servers then share which server owns each node (holds its root): the first to provision a node claims it, the others render its config with the owner's address (.Server). Default: unset (one server on its own).",
		parse: func(p *parser, v string) *Error {
			for _, e := range strings.Split(v, ",") {
				e = strings.TrimSpace(e)
				u, err := url.Parse(e)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
					return &Error{Reason: fmt.Sprintf("%q is not an http:// or https:// URL of an etcd member (host:port, no path)", e)}
				}
				p.c.ClusterEndpoints = append(p.c.ClusterEndpoints, e)
			}
			return nil
		},
	}, "server_address", "the address nodes reach this server by, which the other servers give the nodes it owns"),
	pathKey(keySpec{name: "cluster_cert", example: "/etc/pxebootfs/etcd-client.crt", needs: "cluster_key", needsWhy: "the certificate's private key",
		doc: "Client certificate for etcd (TLS). Default: unset."},
		func(c *Config) *string { return &c.ClusterCert }, readableFile),
	pathKey(keySpec{name: "cluster_key", example: "/etc/pxebootfs/etcd-client.key", needs: "cluster_cert", needsWhy: "the certificate it is the key of",
		doc: "Private key of cluster_cert."},
		func(c *Config) *string { return &c.ClusterKey }, readableFile),
	pathKey(keySpec{name: "cluster_ca", example: "/etc/pxebootfs/etcd-ca.crt", needs: "cluster_endpoints", needsWhy: "the etcd cluster it verifies",
		doc: "CA certificate etcd's server certificates are checked against. Default: the system's CAs (with https:// endpoints)."},
		func(c *Config) *string { return &c.ClusterCA }, readableFile),
	{
		name: "cluster_prefix", def: "/pxebootfs/",
		doc: "Key prefix of the cluster's state in etcd: servers sharing a fleet use the same one.",
		parse: func(p *parser, v string) *Error {
			if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, " \t\n") {
				return &Error{Reason: fmt.Sprintf("%q is not a key prefix starting with / (e.g. /pxebootfs/)", v)}
			}
			p.c.ClusterPrefix = strings.TrimRight(v, "/") + "/"
			return nil
		},
	},
	{
		name: "server_name", example: "boot1",
		doc: "This server's name in the cluster (letters, digits, '.', '_', '-'). Default: the host name.",
		parse: func(p *parser, v string) *Error {
			if !validServerName(v) {
				return &Error{Reason: fmt.Sprintf("%q is not a server name (1 to 63 letters, digits, '.', '_', '-', starting with a letter or digit)", v)}
			}
			p.c.ServerName = v
			return nil
		},
	},
	{
		name: "server_address", example: "192.0.2.1",
		doc: "IPv4 address nodes reach this server by (its NFS and TFTP address): templates get it as .Server for the nodes this server owns; in cluster mode the other servers give it to the nodes it owns.",
		parse: func(p *parser, v string) *Error {
			a, err := netip.ParseAddr(v)
			if err != nil || !a.Is4() {
				return &Error{Reason: fmt.Sprintf("%q is not an IPv4 address", v)}
			}
			p.c.ServerAddress = a.String()
			return nil
		},
	},
	listenKey("metrics_listen", "127.0.0.1:9123", "host:port on which Prometheus metrics are served at /metrics; the host is an IP address, localhost or empty (every address). Default: unset (no metrics endpoint).", func(c *Config) *string { return &c.MetricsListen }),
}

// The typed key builders: a key's spec, where its value goes, and for a
// path how it is checked. One parse body per kind of value.

// pathKey is a file or directory, resolved against the config file's
// directory, then checked (readableFile, existingDir, dirIfExists, …).
func pathKey(k keySpec, field func(*Config) *string, check func(string) *Error) keySpec {
	k.parse = func(p *parser, v string) *Error {
		*field(p.c) = p.path(v)
		return check(*field(p.c))
	}
	return k
}

// boolKey is a boolean as Python's ConfigParser reads one (parseBool).
func boolKey(k keySpec, field func(*Config) *bool) keySpec {
	k.parse = func(p *parser, v string) *Error {
		b, ok := parseBool(v)
		if !ok {
			return &Error{Reason: fmt.Sprintf("%q is not a boolean (true/false, yes/no, on/off, 1/0)", v)}
		}
		*field(p.c) = b
		return nil
	}
	return k
}

// durationKey is a duration ("5s", or a number of seconds).
func durationKey(k keySpec, field func(*Config) *time.Duration) keySpec {
	k.parse = func(p *parser, v string) *Error {
		d, e := parseDuration(v)
		*field(p.c) = d
		return e
	}
	return k
}

// secondsKey is a whole number of seconds, 0 or more.
func secondsKey(k keySpec, field func(*Config) *time.Duration) keySpec {
	k.parse = func(p *parser, v string) *Error { return seconds(v, field(p.c)) }
	return k
}

// intKey is a positive integer.
func intKey(k keySpec, field func(*Config) *int) keySpec {
	k.parse = func(p *parser, v string) *Error { return positiveInt(v, field(p.c)) }
	return k
}

// listenKey is a key naming a host:port to listen on, stored by field.
func listenKey(name, example, doc string, field func(*Config) *string) keySpec {
	return keySpec{name: name, example: example, doc: doc, parse: func(p *parser, v string) *Error {
		if e := checkListen(v); e != nil {
			return e
		}
		*field(p.c) = v
		return nil
	}}
}

// templateKey is a reloadable key naming a template file, stored by field.
func templateKey(name, example, doc string, field func(*Config) *string) keySpec {
	return pathKey(keySpec{name: name, reload: true, example: example, doc: doc}, field, readableFile)
}

// ParseBool is the one boolean rule of pxebootfs's INI files, the config's
// and the inventory's: what Python's ConfigParser.getboolean accepts
// (1/yes/true/on, 0/no/false/off, any case), so that configs written for
// the original tool keep working. ok is false for anything else.
func ParseBool(v string) (b, ok bool) { return parseBool(v) }

func parseBool(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "1", "yes", "true", "on":
		return true, true
	case "0", "no", "false", "off":
		return false, true
	}
	return false, false
}

// checkListen validates a listen address. Hostnames other than localhost are
// refused: resolving them at start would make the endpoint depend on DNS.
func checkListen(v string) *Error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return &Error{Reason: fmt.Sprintf("%q is not host:port (e.g. 127.0.0.1:9123)", v)}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return &Error{Reason: fmt.Sprintf("port %q is not a number from 0 to 65535", port)}
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return &Error{Reason: fmt.Sprintf("host %q is not an IP address, localhost or empty", host)}
		}
	}
	return nil
}

func lookupKey(name string) *keySpec {
	for i := range keys {
		if keys[i].name == name {
			return &keys[i]
		}
	}
	return nil
}

// generatorWhy is why the content generator's keys need it.
const generatorWhy = "they have no effect without content_generator; set content_generator or remove the key"

// validServerName: a server's name is a key component in etcd and a word
// in `pxebootfs nodes`.
func validServerName(v string) bool {
	if len(v) == 0 || len(v) > 63 {
		return false
	}
	for i, r := range v {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._-", r)) {
			return false
		}
	}
	return true
}

// needs is k, which needs key set too, for why.
func needs(k keySpec, key, why string) keySpec {
	k.needs, k.needsWhy = key, why
	return k
}

// checkNeeds refuses a key set without the key it needs: a setting that
// silently does nothing is how a commented-out line hides.
func checkNeeds(p *parser) *Error {
	for _, k := range keys {
		if k.needs != "" && p.set[k.name] && !p.set[k.needs] {
			return p.errf(k.name, "needs %s (%s)", k.needs, k.needsWhy)
		}
	}
	return nil
}

// crossChecks run in order after every key parsed.
var crossChecks = []func(p *parser) *Error{
	checkFullModeSet,
	checkRootSource,
	checkFSIDRange,
	checkGaneshaFSIDRange,
	checkDistinctDirs,
	checkMountOptionDirs,
	checkNeeds,
	checkImagesDir,
	checkCluster,
}

// checkCluster: cluster mode shares who holds each node's root, so it is
// for full mode; a server's name defaults to the host name.
func checkCluster(p *parser) *Error {
	if p.c.ClusterEndpoints == nil {
		return nil
	}
	if !p.c.FullMode() {
		return p.errf("cluster_endpoints", "cluster mode shares node roots among servers: it needs full mode (%s)", strings.Join(fullModeKeys, ", "))
	}
	if p.c.ServerName == "" {
		host, err := os.Hostname()
		if err != nil || !validServerName(host) {
			return p.errf("server_name", "is not set and the host name %q cannot be used as one (%v): set server_name", host, err)
		}
		p.c.ServerName = host
	}
	return nil
}

// checkImagesDir defaults images_dir to tftp_root/images and keeps it inside
// tftp_root: the templates name image files by paths relative to it.
func checkImagesDir(p *parser) *Error {
	switch {
	case p.c.ImagesDir != "" && p.c.TFTPRoot == "":
		return p.errf("images_dir", "needs tftp_root (the paths in configs are relative to it)")
	case p.c.TFTPRoot == "":
		return nil
	case p.c.ImagesDir == "":
		p.c.ImagesDir = filepath.Join(p.c.TFTPRoot, "images")
	}
	if !inside(resolveExisting(p.c.ImagesDir), resolveExisting(p.c.TFTPRoot)) {
		return p.errf("images_dir", "%s is not inside tftp_root (%s)", p.c.ImagesDir, p.c.TFTPRoot)
	}
	return nil
}

func checkFullModeSet(p *parser) *Error {
	var missing, set []string
	for _, k := range fullModeKeys {
		if p.set[k] {
			set = append(set, k)
		} else {
			missing = append(missing, k)
		}
	}
	if len(set) == 0 || len(missing) == 0 {
		return nil
	}
	return p.errf(missing[0], "full mode needs %s set together; missing: %s (set: %s)",
		strings.Join(fullModeKeys, ", "), strings.Join(missing, ", "), strings.Join(set, ", "))
}

// checkRootSource: full mode needs a root to give nodes, root_dir or a
// named root; roots_dir alone is for admins preparing one (nodes made
// before would have nothing to boot).
func checkRootSource(p *parser) *Error {
	switch {
	case !p.c.FullMode():
		for _, k := range []string{"root_dir", "roots_dir", "root"} {
			if p.set[k] {
				return p.errf(k, "is for full mode, which needs %s set too", strings.Join(fullModeKeys, ", "))
			}
		}
	case p.c.RootDir == "" && p.c.Root == "":
		key := "root_dir"
		if p.c.RootsDir != "" {
			key = "root"
		}
		return p.errf(key, "full mode needs a root for its nodes: root_dir (one golden tree), or roots_dir and root (named roots with generations)")
	}
	return nil
}

// checkFSIDRange makes sure every node can get an fsid: they are handed out
// from start_fsid upward, at most max_nodes of them.
func checkFSIDRange(p *parser) *Error {
	if !p.c.FullMode() {
		return nil
	}
	if last := uint64(p.c.StartFSID) + uint64(p.c.MaxNodes) - 1; last > math.MaxUint32 {
		return p.errf("start_fsid", "start_fsid %d plus max_nodes %d runs past the largest fsid %d", p.c.StartFSID, p.c.MaxNodes, uint32(math.MaxUint32))
	}
	return nil
}

// maxGaneshaFSID is the largest fsid export = ganesha can give: a node's
// fsid is its Ganesha Export_Id, which is 16 bits.
const maxGaneshaFSID = math.MaxUint16

func checkGaneshaFSIDRange(p *parser) *Error {
	if !p.c.FullMode() || p.c.Export != ExportGanesha {
		return nil
	}
	if last := uint64(p.c.StartFSID) + uint64(p.c.MaxNodes) - 1; last > maxGaneshaFSID {
		return p.errf("start_fsid", "with export = ganesha an fsid is a Ganesha Export_Id, at most %d; start_fsid %d plus max_nodes %d runs past it", maxGaneshaFSID, p.c.StartFSID, p.c.MaxNodes)
	}
	return nil
}

// ganeshaConfigFile accepts a missing file (pxebootfs creates it) or a
// regular one, whose name Ganesha's configuration language and the
// %include line carry unchanged.
func ganeshaConfigFile(path string) *Error {
	// The characters nfsexport writes into Ganesha's files unchanged.
	if err := nfsexport.ValidatePath(path); err != nil {
		return &Error{Reason: err.Error()}
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return &Error{Reason: "cannot check file", Err: err}
	case !fi.Mode().IsRegular():
		return &Error{Reason: fmt.Sprintf("%s exists and is not a regular file (%s)", path, kind(fi.Mode()))}
	}
	return nil
}

// checkMountOptionDirs refuses full-mode directories whose paths cannot be
// written into an overlay's mount options (overlayfs splits them at ',' and
// ':', escapes with '\', aufs splits branches at '=' and ':'), so the
// mistake is a config error at start rather than a failed first boot.
func checkMountOptionDirs(p *parser) *Error {
	if !p.c.FullMode() {
		return nil
	}
	for _, d := range []struct{ key, path string }{{"node_dir", p.c.NodeDir}, {"root_dir", p.c.RootDir}, {"roots_dir", p.c.RootsDir}, {"overlay_dir", p.c.OverlayDir}} {
		if d.path == "" {
			continue
		}
		if err := overlay.CheckPath(d.key, d.path); err != nil {
			return p.errf(d.key, "%v; choose another path", err)
		}
	}
	return nil
}

// checkDistinctDirs keeps pxebootfs's directories out of each other's trees:
// node_dir inside root_dir, for one, would show every node's root inside
// every other node's root.
func checkDistinctDirs(p *parser) *Error {
	if !p.c.FullMode() {
		return nil
	}
	dirs := []struct{ key, path string }{
		{"node_dir", p.c.NodeDir},
		{"root_dir", p.c.RootDir},
		{"roots_dir", p.c.RootsDir},
		{"overlay_dir", p.c.OverlayDir},
		{"state_dir", p.c.StateDir},
	}
	resolved := make([]string, len(dirs))
	for i, d := range dirs {
		resolved[i] = resolveExisting(d.path)
	}
	for i := range dirs {
		for j := i + 1; j < len(dirs); j++ {
			a, b := dirs[i], dirs[j]
			switch {
			case resolved[i] == resolved[j]:
				return p.errf(b.key, "%s is the same directory as %s (%s); they must be distinct", b.path, a.key, a.path)
			case inside(resolved[i], resolved[j]):
				return p.errf(a.key, "%s lies inside %s's tree (%s); they must not nest", a.path, b.key, b.path)
			case inside(resolved[j], resolved[i]):
				return p.errf(b.key, "%s lies inside %s's tree (%s); they must not nest", b.path, a.key, a.path)
			}
		}
	}
	return nil
}

// inside reports whether inner is strictly below outer; both clean and
// absolute.
func inside(inner, outer string) bool {
	if outer == "/" {
		return inner != "/"
	}
	return strings.HasPrefix(inner, outer+"/")
}

func parseAllow(v string) ([]netip.Prefix, *Error) {
	var out []netip.Prefix
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, &Error{Reason: fmt.Sprintf("empty item in %q; separate prefixes with single commas", v)}
		}
		var pfx netip.Prefix
		if strings.Contains(item, "/") {
			var err error
			if pfx, err = netip.ParsePrefix(item); err != nil {
				return nil, &Error{Reason: fmt.Sprintf("%q is not a CIDR prefix such as 192.168.1.0/24", item)}
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, &Error{Reason: fmt.Sprintf("%q is not an IPv4 address or CIDR prefix such as 192.168.1.0/24", item)}
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		if !pfx.Addr().Is4() {
			return nil, &Error{Reason: fmt.Sprintf("%q is not IPv4; pxelinux names nodes by IPv4 address only", item)}
		}
		if m := pfx.Masked(); m != pfx {
			return nil, &Error{Reason: fmt.Sprintf("%q has host bits set; did you mean %s?", item, m)}
		}
		out = append(out, pfx)
	}
	return out, nil
}

// splitOptions splits a comma-separated mount or export option list. Each
// option ends up as one argument, so whitespace inside one is a mistake.
func splitOptions(v string) ([]string, *Error) {
	var out []string
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			return nil, &Error{Reason: fmt.Sprintf("empty option in %q", v)}
		}
		if strings.IndexFunc(o, isSpace) >= 0 {
			return nil, &Error{Reason: fmt.Sprintf("option %q contains whitespace", o)}
		}
		out = append(out, o)
	}
	return out, nil
}

func isSpace(r rune) bool {
	return strings.ContainsRune(" \t\n\r\v\f", r)
}

func optionName(o, seps string) string {
	if i := strings.IndexAny(o, seps); i >= 0 {
		return o[:i]
	}
	return o
}

// readableFile checks that path is a regular file we can open. Stat comes
// first so that a FIFO is rejected instead of blocking the open.
func readableFile(path string) *Error {
	fi, err := os.Stat(path)
	if err != nil {
		return &Error{Reason: "not a readable file", Err: err}
	}
	if !fi.Mode().IsRegular() {
		return &Error{Reason: fmt.Sprintf("%s is not a regular file (%s)", path, kind(fi.Mode()))}
	}
	f, err := os.Open(path)
	if err != nil {
		return &Error{Reason: "not a readable file", Err: err}
	}
	f.Close()
	return nil
}

// positiveInt parses v into *n, 1 or more.
func positiveInt(v string, n *int) *Error {
	i, err := strconv.Atoi(v)
	if err != nil || i < 1 {
		return &Error{Reason: fmt.Sprintf("%q is not a positive integer", v)}
	}
	*n = i
	return nil
}

// seconds parses a whole number of seconds, 0 or more, into *d.
func seconds(v string, d *time.Duration) *Error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return &Error{Reason: fmt.Sprintf("%q is not a number of seconds (0 or more)", v)}
	}
	*d = time.Duration(n) * time.Second
	return nil
}

// mountPoint is a directory, a missing path (`pxebootfs mount` creates
// it, as the systemd unit does), or a FUSE mount whose daemon died
// (ENOTCONN), which `pxebootfs mount` clears before mounting again. Asked
// with statfs: the kernel answers a stat of our mount's root from its
// cache even when the daemon is dead.
func mountPoint(path string) *Error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); errors.Is(err, syscall.ENOTCONN) {
		return nil
	}
	return dirIfExists(path)
}

func existingDir(path string) *Error {
	fi, err := os.Stat(path)
	if err != nil {
		return &Error{Reason: "not an existing directory", Err: err}
	}
	if !fi.IsDir() {
		return &Error{Reason: fmt.Sprintf("%s is not a directory (%s)", path, kind(fi.Mode()))}
	}
	return nil
}

// dirIfExists accepts a missing path (pxebootfs creates it) but not one that
// is something other than a directory.
func dirIfExists(path string) *Error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return &Error{Reason: "cannot check directory", Err: err}
	case !fi.IsDir():
		return &Error{Reason: fmt.Sprintf("%s exists and is not a directory (%s)", path, kind(fi.Mode()))}
	}
	return nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}
