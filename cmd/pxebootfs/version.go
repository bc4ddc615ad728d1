package main

import (
	"fmt"
	"io"
	"runtime/debug"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		if v != "" {
			return v
		}
	}
	return "unknown"
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fl := newFlagSet("version", "", stderr)
	if code := parseFlags(fl, args); code >= 0 {
		return code
	}
	fmt.Fprintf(stdout, "pxebootfs %s\n", versionString())
	return exitOK
}
