# pxebootfs. `make test` and `make demo` need root; see README.md.
PREFIX      ?= /usr/local
SBINDIR     ?= $(PREFIX)/sbin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO          ?= go
LDFLAGS     := -X main.version=$(VERSION)

.PHONY: all build test demo bench fuzz vet clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/pxebootfs ./cmd/pxebootfs

test:
	scripts/test.sh

demo:
	scripts/demo.sh

# Prints pxebootfs and static-file TFTP fetch rates side by side, cold and
# warm provisioning latency, and a 1,000-node storm (root; see README).
bench:
	$(GO) test -run '^$$' -bench TFTPFetch -benchtime 2000x ./e2e
	$(GO) test -run '^$$' -bench ColdProvision -benchtime 200x ./e2e
	$(GO) test -run '^$$' -bench Storm1000 -benchtime 1x -timeout 30m ./e2e

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./pxename
	$(GO) test -run '^$$' -fuzz FuzzRender -fuzztime 60s ./render

vet:
	gofmt -l . | (! grep .)
	$(GO) vet ./...

clean:
	rm -rf bin
