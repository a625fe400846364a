# vllmctl: build, test and demo on a fresh Debian 12 machine (run as root, or with sudo for deps).
SHELL := /bin/bash
SWIFT ?= swift
BUILD_FLAGS ?= -Xswiftc -warnings-as-errors
PREFIX ?= /usr/local
export VLLMCTL_CONFIG ?= $(CURDIR)/.cluster/vllmctl.yaml

.PHONY: all deps build test unit-test integration-test sim-test cluster-test demo bench lint format \
        cluster-up cluster-down cluster-status install clean

all: build

## Install system packages (apt-get, idempotent): Slurm, MariaDB, munge, sshd, libcurl, libssh2.
deps:
	bash slurm/install-deps.sh

build: deps
	$(SWIFT) build $(BUILD_FLAGS)

## Everything: deps, the local cluster, build, unit + integration tests.
test: deps cluster-up
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	python3 -m unittest slurm/sim/test_vllm_sim.py
	bash slurm/tests/test-cluster.sh
	$(SWIFT) test --skip-build

unit-test:
	$(SWIFT) test $(BUILD_FLAGS) --filter VLLMCtlKitTests

integration-test: cluster-up
	$(SWIFT) test $(BUILD_FLAGS) --filter IntegrationTests

sim-test:
	python3 -m unittest slurm/sim/test_vllm_sim.py

cluster-test: cluster-up
	bash slurm/tests/test-cluster.sh

## The main job on the built-in default: deploy the simulator on the local cluster and use it.
demo: build cluster-up
	bash slurm/demo.sh

## Benchmarks: numbers with ratios, see docs/BENCHMARKS.md.
bench: deps cluster-up
	$(SWIFT) build -c release --static-swift-stdlib --product vllmctl
	bash Tests/bench/run.sh

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

## A release binary with the Swift runtime linked in (starts faster; runs without a Swift toolchain).
install: deps
	$(SWIFT) build -c release --static-swift-stdlib --product vllmctl
	install -d $(PREFIX)/bin $(PREFIX)/share/vllmctl/templates
	install -m 0755 .build/release/vllmctl $(PREFIX)/bin/vllmctl
	install -m 0644 templates/*.mustache $(PREFIX)/share/vllmctl/templates/

clean:
	rm -rf .build
