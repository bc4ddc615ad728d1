package nfsexport

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoKernelServer is wrapped by KernelServer's error: exportfs only
// writes etab, and without the kernel's NFS server running nothing serves
// what it lists.
var ErrNoKernelServer = errors.New("the kernel NFS server is not running")

// KernelServer reports whether the kernel NFS server can serve exports:
// the nfsd filesystem mounted at /proc/fs/nfsd (the kernel's nfsd is
// loaded and started) and rpc.mountd running (it answers the clients'
// MOUNT requests from etab). Its error says which is missing and what to
// do.
func KernelServer() error {
	var missing []string
	if !nfsdMounted("/proc/mounts") {
		missing = append(missing, "/proc/fs/nfsd is not mounted (no nfsd in this kernel, or nfs-server not started)")
	}
	if !processRunning("/proc", "rpc.mountd") {
		missing = append(missing, "rpc.mountd is not running")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s; exports would succeed and nodes could not mount their roots (systemctl start nfs-server, or export = ganesha)", ErrNoKernelServer, strings.Join(missing, ", "))
}

func nfsdMounted(mounts string) bool {
	f, err := os.Open(mounts)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 3 && fields[2] == "nfsd" {
			return true
		}
	}
	return false
}

func processRunning(proc, comm string) bool {
	dirs, err := filepath.Glob(filepath.Join(proc, "[0-9]*", "comm"))
	if err != nil {
		return false
	}
	for _, p := range dirs {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == comm {
			return true
		}
	}
	return false
}
