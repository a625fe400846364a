# vllmctl: build, test and demo on a fresh Debian 12 machine (run as root, or with sudo for deps).
SHELL := /bin/bash
SWIFT ?= swift
## The release build: the Swift runtime and Foundation linked in, so the binary runs where no
## toolchain is installed. Its symbols are not exported: the static runtime's link arguments
## ask for -export-dynamic, which only a Swift plugin loaded by dlopen would need, and the
## 17,000 exported symbols cost every start (dladdr in the runtime's start-up scans them all).
RELEASE := build -c release --static-swift-stdlib --product vllmctl -Xlinker --no-export-dynamic
BUILD_FLAGS ?= -Xswiftc -warnings-as-errors
PREFIX ?= /usr/local
export VLLMCTL_CONFIG ?= $(CURDIR)/.cluster/vllmctl.yaml

.PHONY: all deps build test unit-test integration-test sim-test cluster-test demo bench fuzz docs lint format \
        cluster-up cluster-down cluster-status install install-files uninstall man clean

all: build

## Install system packages (apt-get, idempotent): Slurm, MariaDB, munge, sshd, libcurl, libssh2.
deps:
	bash slurm/install-deps.sh

build: deps
	$(SWIFT) build $(BUILD_FLAGS)

## Everything: deps, the local cluster, build, unit + integration tests.
test: deps cluster-up
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	python3 -m unittest slurm/sim/test_vllm_sim.py slurm/sim/test_ray_mode.py
	bash slurm/tests/test-cluster.sh
	$(SWIFT) test --skip-build

unit-test:
	$(SWIFT) test $(BUILD_FLAGS) --filter VLLMCtlKitTests

integration-test: cluster-up
	$(SWIFT) test $(BUILD_FLAGS) --filter IntegrationTests

sim-test:
	python3 -m unittest slurm/sim/test_vllm_sim.py slurm/sim/test_ray_mode.py

cluster-test: cluster-up
	bash slurm/tests/test-cluster.sh

## The main job on the built-in default: deploy the simulator on the local cluster and use it.
demo: build cluster-up
	bash slurm/demo.sh

## Benchmarks: numbers with ratios, see docs/BENCHMARKS.md.
bench: deps cluster-up
	$(SWIFT) $(RELEASE)
	bash Tests/bench/run.sh

## Fuzzing (docs/FUZZING.md): libFuzzer over every parser of outside input (squeue, sacct,
## ssh_config, known_hosts, config, SSE, Prometheus text, the connection JSON), FUZZ_SECONDS
## each (default 60; FUZZ_TARGETS picks some). Its own package, Tests/Fuzz, built with
## -sanitize=fuzzer in .build/fuzz: the main build and `make test` never compile it. Fails
## on a crash, whose input is left in .build/fuzz/crashes/TARGET. Not part of `make test`.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash Tests/Fuzz/run.sh

## VLLMCtlKit's DocC documentation (swift-docc-plugin), as a static site in DOCS_DIR:
## `python3 -m http.server -d $(DOCS_DIR)` and open /documentation/vllmctlkit. A warning (a
## broken symbol link in Sources/VLLMCtlKit/VLLMCtlKit.docc) fails it. Not part of `make test`.
DOCS_DIR ?= .build/docs
docs:
	$(SWIFT) package --allow-writing-to-directory $(DOCS_DIR) generate-documentation --target VLLMCtlKit \
		--warnings-as-errors --transform-for-static-hosting --output-path $(DOCS_DIR)
	@echo "Documentation in $(DOCS_DIR): python3 -m http.server -d $(DOCS_DIR), then /documentation/vllmctlkit"

cluster-up:
	bash slurm/cluster-up.sh

cluster-down:
	bash slurm/cluster-down.sh

cluster-status:
	bash slurm/cluster-status.sh

lint:
	swift-format lint --strict --recursive Sources Tests Package.swift

format:
	swift-format format --in-place --recursive Sources Tests Package.swift

## A release binary with the Swift runtime linked in (starts faster; runs without a Swift toolchain),
## installed with its templates, man pages and shell completions under PREFIX. Files go where
## each tool looks: man in share/man/man1, bash in share/bash-completion/completions, zsh in
## share/zsh/site-functions, fish in share/fish/vendor_completions.d. `make uninstall` removes
## exactly the files listed in PREFIX/share/vllmctl/install-manifest.
BIN ?= .build/release/vllmctl
MANIFEST = $(PREFIX)/share/vllmctl/install-manifest

## The commit for `vllmctl --version` (see Package.swift).
COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo +dirty)

install: deps
	VLLMCTL_COMMIT=$(COMMIT) $(SWIFT) $(RELEASE)
	$(MAKE) install-files PREFIX=$(PREFIX) BIN=$(BIN)

## Installs an already built BIN (tests use it with the debug binary).
install-files:
	@set -euo pipefail; \
	p="$(PREFIX)"; files=(); \
	put() { install -D -m "$$1" "$$2" "$$p/$$3"; files+=("$$3"); }; \
	put 0755 "$(BIN)" bin/vllmctl; \
	for t in templates/*.mustache; do put 0644 "$$t" "share/vllmctl/templates/$${t##*/}"; done; \
	for m in man/*.1; do put 0644 "$$m" "share/man/man1/$${m##*/}"; done; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	"$(BIN)" --generate-completion-script bash > "$$tmp/bash"; \
	"$(BIN)" --generate-completion-script zsh > "$$tmp/zsh"; \
	"$(BIN)" --generate-completion-script fish > "$$tmp/fish"; \
	put 0644 "$$tmp/bash" share/bash-completion/completions/vllmctl; \
	put 0644 "$$tmp/zsh" share/zsh/site-functions/_vllmctl; \
	put 0644 "$$tmp/fish" share/fish/vendor_completions.d/vllmctl.fish; \
	printf '%s\n' "$${files[@]}" share/vllmctl/install-manifest > "$(MANIFEST)"; \
	echo "Installed $$("$$p/bin/vllmctl" --version) in $$p ($${#files[@]} files; \`make uninstall PREFIX=$$p\` removes them)."

## Removes what `make install` put under PREFIX, and the directories that leaves empty.
uninstall:
	@set -euo pipefail; p="$(PREFIX)"; \
	test -f "$(MANIFEST)" || { echo "no $(MANIFEST): nothing installed by make install under $$p"; exit 1; }; \
	mapfile -t files < "$(MANIFEST)"; \
	for f in "$${files[@]}"; do rm -f -- "$$p/$$f"; done; \
	for f in "$${files[@]}"; do d=$$(dirname "$$p/$$f"); \
	  while [ "$$d" != "$$p" ] && rmdir -- "$$d" 2>/dev/null; do d=$$(dirname "$$d"); done; done; \
	echo "Removed $${#files[@]} files from $$p."

## Regenerates the committed man pages (man/) with swift-argument-parser's generate-manual
## plugin, and the help dump a test compares with the binary's to keep them up to date.
man:
	mkdir -p man
	$(SWIFT) package --allow-writing-to-directory man generate-manual --multi-page --configuration debug \
		--authors "the vllmctl authors" --output-directory man
	$(SWIFT) build --product vllmctl
	.build/debug/vllmctl --experimental-dump-help > man/vllmctl.help.json

clean:
	rm -rf .build
