# Thin wrapper around meson: the two commands of the README, and a few helpers.
#   make run    install missing Debian packages, build, fetch the assets, run the main experiment
#   make test   the same set-up with a sanitizer build, then the whole test suite
#   make fuzz   clang + libFuzzer build (build-fuzz), each fuzz target for FUZZ_SECONDS seconds
SHELL := /bin/bash
BUILD      ?= build
TEST_BUILD ?= build-test
EXPERIMENT ?= experiments/groupsize_sweep.json
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
export GQ_ASSETS ?= $(CURDIR)/assets

# Prefer the OpenMP build of OpenBLAS (one thread pool shared with our OpenMP loops).
OPENBLAS_OMP_PC := /usr/lib/x86_64-linux-gnu/openblas-openmp/pkgconfig
MESON_SETUP := PKG_CONFIG_PATH=$(OPENBLAS_OMP_PC)$${PKG_CONFIG_PATH:+:$$PKG_CONFIG_PATH} meson setup

.PHONY: run test deps assets test-assets build build-tests build-fuzz fuzz bench clean

run: build assets
	./$(BUILD)/gq-bench run $(EXPERIMENT)

test: build-tests test-assets
	meson test -C $(TEST_BUILD) --print-errorlogs --num-processes 2

deps:
	@scripts/install-deps.sh

# Missing assets are fatal for `make run`; for `make test` only when GQ_REQUIRE_ASSETS=1
# (otherwise the tests that need them are skipped and say so).
assets:
	@scripts/fetch-assets.sh

test-assets:
	@scripts/fetch-assets.sh || [ "$${GQ_REQUIRE_ASSETS:-0}" != 1 ]

build: deps
	@[ -f $(BUILD)/build.ninja ] || $(MESON_SETUP) $(BUILD) --buildtype=release
	ninja -C $(BUILD)

build-tests: deps
	@[ -f $(TEST_BUILD)/build.ninja ] || $(MESON_SETUP) $(TEST_BUILD) --buildtype=release \
	    -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C $(TEST_BUILD)

# Fuzzing: every target replays its committed corpus, then fuzzes for FUZZ_SECONDS seconds
# (CI: FUZZ_SECONDS=40). Findings go to $(FUZZ_BUILD)/fuzz-artifacts/.
build-fuzz:
	@scripts/install-deps.sh fuzz
	@[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang $(MESON_SETUP) $(FUZZ_BUILD) --buildtype=release \
	    -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=enabled -Dmpi=disabled
	ninja -C $(FUZZ_BUILD) fuzz-targets

fuzz: build-fuzz
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

bench: build
	./$(BUILD)/gq-bench bench forward --preset stories110M --ctx 512
	./$(BUILD)/gq-bench bench formats

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD)
