package main

// Exit codes, in one place so scripts and systemd can rely on them.
const (
	exitOK          = 0
	exitFailure     = 1 // the command ran and failed (a name not served, a check that found problems, a mount that failed)
	exitUsage       = 2 // bad command line
	exitConfig      = 3 // the config file is missing or invalid
	exitNoDaemon    = 4 // the command needs the running daemon and none answers on the control socket
	exitUnknownNode = 5 // a node named is not in the registry
	exitPermission  = 6 // not allowed: admin commands need root
	exitRefused     = 7 // refused for safety: the node booted within reset_guard (see -force)
)
