package main

// Exit codes, in one place so scripts and systemd can rely on them.
const (
	exitOK          = 0
	exitFailure     = 1 // the command ran and failed, or the environment cannot run it
	exitUsage       = 2 // bad command line
	exitConfig      = 3 // the config file, or a file or directory it names, is missing or invalid
	exitNoDaemon    = 4 // the command needs the running daemon and none answers on the control socket
	exitUnknownNode = 5 // a node named is not in the registry
	exitPermission  = 6 // not allowed: admin commands need root
	exitRefused     = 7 // refused: the node booted within reset_guard (see -force), or install cannot apply to it
)

// exitCodes is what each code means to an admin. The README's exit-code
// table is checked against it, so the two cannot drift apart.
var exitCodes = []struct {
	code    int
	meaning string
}{
	{exitOK, "success"},
	{exitFailure, "the command ran and failed (a name not served, a mount that failed), or the machine cannot run it (`check`: no usable /dev/fuse, no exportfs, overlays not mountable, Ganesha not answering)"},
	{exitUsage, "bad command line"},
	{exitConfig, "the config is wrong: a missing file, an unknown key, a bad value, a template, ethers file or inventory that does not load, a `state_dir` that cannot be created or written (`check` and `mount` alike); also a `reload` the daemon rejected"},
	{exitNoDaemon, "the command needs the running daemon and none answers on the control socket"},
	{exitUnknownNode, "a node named is not in the registry"},
	{exitPermission, "not allowed: admin commands need root"},
	{exitRefused, "refused for safety: the node booted within `reset_guard` (`reset`, `release`, `release -purge`; add `-force` if it is really down); `install` of a node outside `allow` or without an install template; `installed` of a node never in install mode; `reset` or `release` with a config-only mode config (nodes have no roots)"},
}
