# pxebootfs. `make test` and `make demo` need root; see README.md.
PREFIX      ?= /usr/local
SBINDIR     ?= $(PREFIX)/sbin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO          ?= go
LDFLAGS     := -X main.version=$(VERSION)
# make install: DESTDIR stages into a directory (packaging, tests).
DESTDIR     ?=
SYSCONFDIR  ?= /etc/pxebootfs
UNITDIR     ?= /etc/systemd/system
BIN         ?= bin/pxebootfs

.PHONY: all build install deb test demo bench fuzz vet clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/pxebootfs ./cmd/pxebootfs

# A Debian package in the current directory (scripts/deb.sh; dpkg-deb).
deb:
	scripts/deb.sh .

test:
	scripts/test.sh

demo:
	scripts/demo.sh

# Prints pxebootfs and static-file TFTP fetch rates side by side, cold and
# warm provisioning latency, a 1,000-node storm, and what a node's own root
# costs at boot against a shared one (root; see README).
bench:
	$(GO) test -run '^$$' -bench TFTPFetch -benchtime 2000x ./internal/e2e
	$(GO) test -run '^$$' -bench ColdProvision -benchtime 200x ./internal/e2e
	$(GO) test -run '^$$' -bench 'Storm1000$$' -benchtime 1x -timeout 30m ./internal/e2e
	$(GO) test -run '^$$' -bench 'Restart$$' -benchtime 1x -timeout 60m ./internal/e2e
	$(GO) test -run '^$$' -bench Fleet10000 -benchtime 1x ./internal/e2e
	# What a node's own root costs at boot against a shared read-only root.
	$(GO) test -run '^$$' -bench BootReads -benchtime 1x -timeout 30m ./internal/e2e
	$(GO) test -run '^$$' -bench BootWrites -benchtime 1x -timeout 30m ./internal/e2e
	$(GO) test -run '^$$' -bench BootGuests -benchtime 1x -timeout 30m ./internal/e2e
	$(GO) test -run '^$$' -bench ExportScale -benchtime 1x -timeout 60m ./internal/e2e
	# Long (exportfs is quadratic in exports: see the README).
	$(GO) test -run '^$$' -bench Storm10000 -benchtime 1x -timeout 150m ./internal/e2e

# Every fuzz target, ten times test.sh's budget (about a minute each);
# FUZZ_SCALE or FUZZTIME change it (scripts/fuzz.sh).
fuzz:
	FUZZ_SCALE=$${FUZZ_SCALE:-10} scripts/fuzz.sh

vet:
	gofmt -l . | (! grep .)
	$(GO) vet ./...

# Binary, systemd unit, and the example config and template where Debian
# admins look for them. An existing config or template is never replaced:
# they are the admin's; the current example is always at
# $(SYSCONFDIR)/pxebootfs.cfg.example for comparison.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/pxebootfs
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|/usr/local/sbin/pxebootfs|$(SBINDIR)/pxebootfs|' contrib/pxebootfs.service > $(DESTDIR)$(UNITDIR)/pxebootfs.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/pxebootfs.service
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)
	install -m 0644 pxebootfs.cfg.example $(DESTDIR)$(SYSCONFDIR)/pxebootfs.cfg.example
	test -e $(DESTDIR)$(SYSCONFDIR)/pxebootfs.cfg || install -m 0644 pxebootfs.cfg.example $(DESTDIR)$(SYSCONFDIR)/pxebootfs.cfg
	test -e $(DESTDIR)$(SYSCONFDIR)/pxelinux.cfg.template || install -m 0644 pxelinux.cfg.template $(DESTDIR)$(SYSCONFDIR)/pxelinux.cfg.template
	test -e $(DESTDIR)$(SYSCONFDIR)/grub.cfg.template || install -m 0644 grub.cfg.template $(DESTDIR)$(SYSCONFDIR)/grub.cfg.template
	@echo "installed; next: systemctl daemon-reload && systemctl enable --now pxebootfs"

clean:
	rm -rf bin
