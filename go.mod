module github.com/pxebootfs/pxebootfs

go 1.26.8

require (
	github.com/hanwen/go-fuse/v2 v2.12.1
	github.com/moby/sys/mountinfo v0.7.3
	golang.org/x/sys v0.49.0
	gopkg.in/ini.v1 v1.67.3
)

require golang.org/x/sync v0.24.0
