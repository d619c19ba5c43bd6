# torchfaas: every entry point. `make demo` and `make test` set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(abspath $(VENV)/bin/python)
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
PORT ?= 8080
FUNCTION ?= classifier
TEMPLATE := template/python3-http-torch
FN_BUILD := build/$(FUNCTION)
ARTIFACTS := $(abspath artifacts/$(FUNCTION))
FAAS_CLI ?= faas-cli
# how `make run` starts the function: the environment the Dockerfile sets,
# minus the watchdog, and the latency objective of the function's contract (what its
# stack.yml entry sets; tests/unit/test_latency_objectives.py), read when a recipe runs
RUN_ENV = PORT=$(PORT) HOST=127.0.0.1 FUNCTION_NAME=$(FUNCTION) ARTIFACTS_DIR=$(ARTIFACTS) \
	LATENCY_OBJECTIVE_MS=$(shell $(VENV)/bin/torchfaas-slo objective functions/$(FUNCTION)/slo 2>/dev/null)

.PHONY: help install run invoke test lint system-tools ci shrinkwrap build deploy clean slo load capacity demo \
	bench compare review canary

# `$(call exit_with,N)` ends make with status N (compare, review: 0 promote, 1 hold,
# 2 inconclusive, 3 broken run). GNU make exits 2 whenever a recipe fails, so the status
# goes through `$(exit N)`, a function of mk/exit_status.c that make compiles with the C
# compiler and loads itself; without a compiler, make exits 2 for any non-zero status.
-load build/mk/exit_status.so
build/mk/exit_status.so: mk/exit_status.c
	@mkdir -p $(@D) && $(CC) -shared -fPIC -O2 -o $@ $< 2>/dev/null || true
exit_with = $(if $(filter-out 0,$(1)),$(exit $(1)))@exit $(1)

# `make help` prints every `## target: what it does` line of this file, in order:
# every entry point has one
## help: this list
help:
	@awk '/^## [a-z-]+: /{sub(/^## /, ""); n = index($$0, ": "); \
		printf "  make %-13s %s\n", substr($$0, 1, n - 1), substr($$0, n + 2)}' $(firstword $(MAKEFILE_LIST))
	@echo "  every target takes FUNCTION=<a folder of functions/> (default classifier)"

## install: .venv with CPU torch and the pinned dependencies, and the function's build-time artifacts
install: $(VENV)/.installed $(ARTIFACTS)/manifest.json

# CPU torch first: with it installed, the unpinned `torch` the model packages ask
# for is satisfied and pip does not pull the CUDA build.
$(VENV)/.installed: $(TEMPLATE)/requirements.txt functions/$(FUNCTION)/requirements.txt requirements-dev.txt slo/pyproject.toml \
		$(wildcard functions/$(FUNCTION)/build-requirements.txt)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==$(TORCH_VERSION)
	$(PIP) install -q --disable-pip-version-check -r $(TEMPLATE)/requirements.txt \
		-r functions/$(FUNCTION)/requirements.txt -r requirements-dev.txt \
		$(addprefix -r ,$(wildcard functions/$(FUNCTION)/build-requirements.txt))
	$(PIP) install -q --disable-pip-version-check -e ./slo
	touch $@

# the same build-time step the Dockerfile runs; the classifier's AOTInductor
# compile (~30 s) is skipped when artifacts/ already holds a package built from
# the same weights, torch and recipe
$(ARTIFACTS)/manifest.json: $(VENV)/.installed $(wildcard functions/$(FUNCTION)/*.py) $(TEMPLATE)/torchfaas/toolkit/compiled.py
	$(MAKE) --no-print-directory shrinkwrap
	cd $(FN_BUILD) && ARTIFACTS_DIR=$(ARTIFACTS) $(PY) -m torchfaas.prepare

# lay out build/<fn> as `faas-cli build --shrinkwrap` does: the template, then
# the function's files over its function/ folder
## shrinkwrap: lay out build/<function> as `faas-cli build --shrinkwrap` does
shrinkwrap:
	@$(PYTHON) load/local_function.py shrinkwrap functions/$(FUNCTION) $(FN_BUILD)

## run: the function on http://127.0.0.1:8080 (PORT=) as in the image, minus the watchdog; Ctrl-C stops it
# stdout carries only the function's JSON lines (`make run | jq .`): the set-up's
# output goes to stderr and the recipe is not echoed
run:
	@$(MAKE) --no-print-directory install shrinkwrap >&2
	@cd $(FN_BUILD) && $(RUN_ENV) exec $(PY) index.py

## invoke: post the function's example request (functions/<fn>/testdata/example.*) to the one `make run` serves
# the function's example request (functions/$(FUNCTION)/testdata/example.*, else its first
# photo) to a running function (`make run` in another shell; HOST=http://... for another)
invoke:
	@test -x $(PY) || $(MAKE) --no-print-directory install >&2
	@$(PY) load/invoke.py functions/$(FUNCTION) --url $(or $(filter http://% https://%,$(HOST)),http://127.0.0.1:$(PORT))

## test: what CI runs: lint, then every suite (installs the system tools when root with apt)
# Suites whose system tools are missing skip, and the run ends with one line saying so
# and how to install them (INSTALL_SYSTEM_TOOLS=0: never install).
test: install system-tools lint
	$(PY) -m pytest tests -q --durations=25

## lint: ruff over the whole tree (rules in pyproject.toml)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

## system-tools: install the Debian tools some suites need (root with apt), else say what is missing
system-tools:
	@bash .ci/install-system-tools --if-root

## ci: exactly what CI runs (.ci/run: the system tools with sudo if needed, then make test)
ci:
	bash .ci/run

## fuzz: coverage-guided fuzzing of the request path (DURATION=seconds, default 600)
# coverage-guided fuzzing of the request path (atheris, in-process, the real classifier):
# make fuzz [DURATION=seconds, default 600]; prints executions, coverage and crash
# inputs, which land in tests/fuzz/crashes/ and are replayed by `make test` from then on
.PHONY: fuzz
fuzz: install
	@mkdir -p reports/fuzz
	$(PY) tests/fuzz/fuzz_request.py --seconds $(or $(DURATION),600) --work reports/fuzz

## soak: steady load at 80% of capacity with bad inputs; fails on RSS growth or a lost line
# soak: the function under steady load at ~80% of its measured capacity with ~5% bad
# inputs; prints RSS over time, p99 per minute and lost log lines, fails if RSS grows
# > 32 MiB after warm-up or a line is lost. make soak [DURATION=seconds, default 600]
# [SOAK_ARGS="--rate 40 --env BATCH_SIZE=4"]; summary in reports/soak/soak.json
.PHONY: soak
soak: install shrinkwrap
	$(PY) load/soak.py --function $(FUNCTION) --build $(FN_BUILD) --artifacts $(ARTIFACTS) \
		--duration $(or $(DURATION),600) --report-dir reports/soak $(SOAK_ARGS)

## build: faas-cli build -f stack.yml (every function's image, with SOURCE_COMMIT)
# SOURCE_COMMIT: the commit the image is built from (stack.yml's build_args)
build:
	SOURCE_COMMIT=$$(git rev-parse HEAD 2>/dev/null) $(FAAS_CLI) build -f stack.yml

## deploy: faas-cli deploy -f stack.yml
deploy:
	$(FAAS_CLI) deploy -f stack.yml

## image: build every function's image with podman, run each as faas-netes does (root, podman; minutes)
# the images as `faas-cli build -f stack.yml` builds them, built with podman against local stand-ins
# for the base images and run as faas-netes runs it (tests/image; needs root, podman,
# runc, debootstrap; `make test` includes it, `-m "not image"` leaves it out)
.PHONY: image
image: install
	$(PY) -m pytest tests/image -q -m image

## clean: remove build/, artifacts/, reports/
clean:
	rm -rf build artifacts reports .pytest_cache

## bench: the benchmark: model and pipeline limits, served c=1/4/16, cold start (~10 min)
# speed: model limit, pipeline limit, served vs seed-style handler at c=1/4/16,
# cold start, logging cost and the target ratios (docs/benchmarks.md, "What each figure means");
# ~10 min (every served variant and the seed started 3 times, interleaved, each variant's
# pipeline limit taken right after its starts). Another FUNCTION= gets what means the same for
# any function: served c=1/4/16 with its load inputs, the runtime alone, cold start (~2 min);
# it lists the classifier-only parts it skips.
# BENCH_ARGS e.g. "--duration 15" or "--env BATCH_SIZE=4"
bench: install
	@mkdir -p reports
	PYTHONPATH=load $(PY) load/benchmark/bench.py --function $(FUNCTION) --artifacts $(ARTIFACTS) \
		--json reports/bench$(if $(filter-out classifier,$(FUNCTION)),-$(FUNCTION)).json $(BENCH_ARGS)

## bench-peers: torchfaas against LitServe, TorchServe and BentoML on the same model (~12 min)
# torchfaas fp32 against the peer servers (LitServe, TorchServe, BentoML), each serving the
# same EfficientNet-Lite0 with its own dynamic batching at its best setting (load/benchmark/peers/),
# one at a time, interleaved over rounds; each peer's venv under .peers/<name>/ (created on
# the first run, ~1 GB each). ~12 min. PEER_BENCH_ARGS e.g. "--rounds 1 --servers torchfaas,litserve"
.PHONY: bench-peers
bench-peers: install
	@mkdir -p reports
	PYTHONPATH=load $(PY) load/benchmark/peer_bench.py --json reports/peers.json $(PEER_BENCH_ARGS)

## slo: check the SLO contracts on LOG_FILE=... or LOKI_URL=...; HTML report in reports/slo
# the function's SLO contracts (functions/$(FUNCTION)/slo/*.feature) with the SLO tool
# (slo/: the `torchfaas-slo` command)
# against Loki (LOKI_URL) or a JSONL log (LOG_FILE), at SLO_AT (unix seconds, default now);
# JSON report to SLO_REPORT; SLO_TAGS filters scenarios (e.g. SLO_TAGS="not @production-mix").
# Needs only the slo package (behave), not torch: a venv with just `pip install ./slo` runs it.
# HTML report (verdicts + inline SVG charts) to SLO_HTML (default reports/slo/report.html).
SLO_HTML ?= reports/slo/report.html
SLO_FEATURES ?= functions/$(FUNCTION)/slo
# The p99 bound (ms) of the function's own latency contract in SLO_FEATURES (classifier 250,
# diabetes 50), read by `torchfaas-slo objective` when a recipe runs: the line compare and
# review draw on their latency charts. SLO_P99_MS=... overrides it. The load tools
# (capacity, load, soak) read the same contract themselves (load/loadkit/traffic.py), so they
# hold the function to its promise when run without make too.
slo_p99_ms = $(or $(SLO_P99_MS),$$($(VENV)/bin/torchfaas-slo objective $(SLO_FEATURES) 2>/dev/null))
slo:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/torchfaas-slo || $(PIP) install -q --disable-pip-version-check -c requirements-dev.txt -e ./slo
	@LOKI_URL="$(LOKI_URL)" LOG_FILE="$(LOG_FILE)" SLO_AT="$(SLO_AT)" SLO_REPORT="$(SLO_REPORT)" SLO_TAGS="$(SLO_TAGS)" \
		SLO_HTML="$(SLO_HTML)" SLO_FUNCTION=$(FUNCTION) $(VENV)/bin/torchfaas-slo $(SLO_FEATURES)

## compare: judge CANDIDATE= against BASELINE= (exit 0 promote, 1 hold, 2 inconclusive, 3 broken run)
# make compare BASELINE=<model_version> CANDIDATE=<model_version> [LOG_FILE=... | LOKI_URL=...]
# [SLO_AT=unix seconds] [COMPARE_REPORT=dir]: the function's comparison contracts
# (functions/$(FUNCTION)/compare: bounds and confidence level in the feature text) over the
# same window; exit 0 promote, 1 hold,
# 2 inconclusive, 3 broken run (make itself exits with that code: see mk/exit_status.c).
# report.md, report.json, report.html in COMPARE_REPORT (default reports/compare).
COMPARE_REPORT ?= reports/compare
COMPARE_FEATURES ?= functions/$(FUNCTION)/compare
.PHONY: .compare-run
compare: .compare-run
	$(call exit_with,$(file < $(COMPARE_REPORT)/make.status))
.compare-run:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/torchfaas-slo || $(PIP) install -q --disable-pip-version-check -c requirements-dev.txt -e ./slo
	@mkdir -p $(COMPARE_REPORT); LOKI_URL="$(LOKI_URL)" LOG_FILE="$(LOG_FILE)" SLO_AT="$(SLO_AT)" SLO_TAGS="$(SLO_TAGS)" \
		COMPARE_BASELINE="$(BASELINE)" COMPARE_CANDIDATE="$(CANDIDATE)" COMPARE_REPORT="$(COMPARE_REPORT)" SLO_FUNCTION=$(FUNCTION) \
		SLO_P99_MS="$(slo_p99_ms)" $(VENV)/bin/torchfaas-slo compare $(COMPARE_FEATURES); \
		echo $$? > $(COMPARE_REPORT)/make.status

## judge-calibration: the judge's false-hold and detection rates, replayed from real logs
# how often the comparison contracts hold identical code and catch a +25% latency, +3 points
# of 5xx and a 20% class skew, replayed from a committed log of identical code (slo/calibration)
.PHONY: judge-calibration
judge-calibration:
	@test -x $(VENV)/bin/torchfaas-slo || $(PIP) install -q --disable-pip-version-check -c requirements-dev.txt -e ./slo
	$(VENV)/bin/torchfaas-slo calibrate --json reports/judge-calibration.json $(CALIBRATION_ARGS)

## bench-packing: the classifier's fp32 packages on AVX-512 and AVX2 oneDNN kernels (~1 min)
# time per image of model.pt2 and model-avx2.pt2, with oneDNN as this CPU runs it and held to
# AVX2 as an AVX2-only node runs it (docs/deploy.md, "Nodes of different CPUs")
.PHONY: bench-packing
bench-packing: install
	$(PY) load/benchmark/packing.py --artifacts $(ARTIFACTS)

## bench-judge: a comparison's time and peak memory at 10^4..10^7 requests a version, by path (~6 min)
# from lines, from a log streamed into bins and from aggregate answers, all resampled from the
# committed log with the candidate 25% slower (docs/review.md, "Lines or aggregates");
# BENCH_JUDGE_ARGS="--sizes 10000,100000" for a quick run
.PHONY: bench-judge
bench-judge:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	PYTHONPATH=$(CURDIR)/slo $(PY) load/benchmark/judge_bench.py --json reports/bench-judge.json $(BENCH_JUDGE_ARGS)

# -- load (load/): Locust profiles, capacity finder, the demo ------------------
# HOST=http://... targets a running function or the gateway
# (http://GATEWAY:8080/function/classifier); without it the function is started
# locally for the run (log in the reports folder) and stopped after it.
PROFILE ?= steady
LOAD_HOST = $(filter http://% https://%,$(HOST))
LOCAL_FN = PY=$(PY) FN_BUILD=$(FN_BUILD) PORT=$(PORT) FN_ENV='$(RUN_ENV)' bash load/with_function.sh
with_fn = $(if $(LOAD_HOST),,$(LOCAL_FN) $(1))
target_url = $(or $(LOAD_HOST),http://127.0.0.1:$(PORT))

## load: a Locust profile (PROFILE=steady|step|spike) against HOST= or a local function
# make load [HOST=...] [PROFILE=steady|step|spike] [USERS=n] [DURATION=s] [LOCUST_ARGS=...]
# thresholds: MAX_P95_MS, MAX_P99_MS (default: the function's latency contract), MAX_FAIL_RATIO
# (exit 1 when broken)
# WORKERS=n: Locust distributed, one master and n workers (load/distributed.py);
# LOCAL_WORKERS=m starts only m of them here, the others join from other machines
locust_cmd = $(if $(WORKERS),$(PY) load/distributed.py --workers $(WORKERS) \
	$(if $(LOCAL_WORKERS),--local-workers $(LOCAL_WORKERS)) --,$(PY) -m locust -f load/locustfile.py)
load: install shrinkwrap
	@mkdir -p reports/load
	$(call with_fn,reports/load) $(locust_cmd) --headless --only-summary \
		--host $(target_url) --function $(FUNCTION) --profile $(PROFILE) $(if $(USERS),--peak-users $(USERS)) \
		$(if $(DURATION),--duration $(DURATION)) --csv reports/load/$(PROFILE) \
		--html reports/load/$(PROFILE).html --sent-log reports/load/$(PROFILE)-sent.jsonl $(LOCUST_ARGS)

## capacity: the concurrency and req/s one replica holds within the p99 SLO
# make capacity [HOST=...] [PEAK_RPS=...] [SLO_P99_MS=ms] [CAPACITY_ARGS=...]; the SLO defaults to
# the p99 bound of the function's latency contract (functions/<fn>/slo)
capacity: install shrinkwrap
	$(call with_fn,reports/capacity) $(PY) load/capacity.py --host $(target_url) --function $(FUNCTION) \
		--json reports/capacity/capacity.json $(CAPACITY_ARGS)

## review: BASE=<git ref> and the working tree served side by side under one split load, judged
# make review BASE=<git ref>: BASE (a git worktree) and the working tree, built and served
# side by side, one Locust traffic split between them at random (REVIEW_USERS, REVIEW_SECONDS,
# REVIEW_SEED), then the comparison contracts; reports in reports/review (load/review.sh);
# exit 0 promote, 1 hold, 2 inconclusive, 3 broken run
.PHONY: .review-run
REVIEW_DIR ?= reports/review
review: .review-run
	$(call exit_with,$(file < $(REVIEW_DIR)/make.status))
.review-run: install
	@PY=$(PY) PORT=$(PORT) FUNCTION=$(FUNCTION) BASE='$(BASE)' REVIEW_DIR='$(REVIEW_DIR)' \
		COMPARE_FEATURES='$(COMPARE_FEATURES)' SLO_P99_MS="$(slo_p99_ms)" bash load/review.sh; \
		code=$$?; mkdir -p $(REVIEW_DIR); echo $$code > $(REVIEW_DIR)/make.status

## canary: watch CANDIDATE= against BASELINE= while traffic shifts (INTERVAL=, DEADLINE=); BASE=<ref> serves a live pair
# make canary BASELINE=<model_version> CANDIDATE=<model_version> [LOKI_URL=... | LOG_FILE=...]
# [INTERVAL=60] [DEADLINE=1800]: `torchfaas-slo watch` looks every INTERVAL seconds at what is
# new, holds at the first look a comparison contract (functions/<fn>/compare) is confidently
# broken, promotes when all are confidently met, is inconclusive at DEADLINE; exit 0 promote,
# 1 hold, 2 inconclusive, 3 broken, through make. Reports (watch.html reloads itself) in
# CANARY_REPORT (default reports/canary).
# make canary BASE=<git ref>: BASE and the working tree built and served side by side with one
# split Locust traffic (as make review), watched while it runs (INTERVAL=10, DEADLINE=180)
.PHONY: .canary-run
CANARY_REPORT ?= reports/canary
canary: .canary-run
	$(call exit_with,$(file < $(CANARY_REPORT)/make.status))
.canary-run:
	@test -x $(VENV)/bin/torchfaas-slo || $(PIP) install -q --disable-pip-version-check -c requirements-dev.txt -e ./slo
	@mkdir -p $(CANARY_REPORT); if [ -n "$(BASE)" ]; then \
		$(MAKE) --no-print-directory install >&2 && PY=$(PY) PORT=$(PORT) FUNCTION=$(FUNCTION) BASE='$(BASE)' \
		REVIEW_MODE=canary REVIEW_DIR='$(CANARY_REPORT)' INTERVAL='$(INTERVAL)' DEADLINE='$(DEADLINE)' \
		COMPARE_FEATURES='$(COMPARE_FEATURES)' bash load/review.sh; \
	else \
		LOKI_URL="$(LOKI_URL)" LOG_FILE="$(LOG_FILE)" SLO_AT="$(SLO_AT)" SLO_FUNCTION=$(FUNCTION) \
		$(VENV)/bin/torchfaas-slo watch $(COMPARE_FEATURES) --baseline "$(BASELINE)" --candidate "$(CANDIDATE)" \
		$(if $(INTERVAL),--interval $(INTERVAL)) $(if $(DEADLINE),--deadline $(DEADLINE)) --report-dir $(CANARY_REPORT); \
	fi; code=$$?; mkdir -p $(CANARY_REPORT); echo $$code > $(CANARY_REPORT)/make.status

## canary-calibration: the watch's error rates over whole watches, replayed in time order from real logs
.PHONY: canary-calibration
canary-calibration:
	@test -x $(VENV)/bin/torchfaas-slo || $(PIP) install -q --disable-pip-version-check -c requirements-dev.txt -e ./slo
	$(VENV)/bin/torchfaas-slo calibrate-watch --json reports/canary-calibration.json $(CALIBRATION_ARGS)

## demo: the function locally + 30 s of load + log summary + SLO report (reports/demo)
# function + short load sized from what the machine serves now (load/sizing.py; DEMO_USERS=n
# for a fixed n) + log summary + SLO contracts, all local (DEMO_SECONDS)
demo: install shrinkwrap
	@PY=$(PY) FUNCTION=$(FUNCTION) FN_BUILD=$(FN_BUILD) PORT=$(PORT) FN_ENV='$(RUN_ENV)' MAKE='$(MAKE)' bash load/demo.sh
