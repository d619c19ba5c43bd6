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
# minus the watchdog
RUN_ENV := PORT=$(PORT) HOST=127.0.0.1 FUNCTION_NAME=$(FUNCTION) ARTIFACTS_DIR=$(ARTIFACTS)

.PHONY: install run test shrinkwrap build deploy clean slo load capacity demo bench compare review

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
shrinkwrap:
	@$(PYTHON) load/localrun.py shrinkwrap functions/$(FUNCTION) $(FN_BUILD)

# stdout carries only the function's JSON lines (`make run | jq .`): the set-up's
# output goes to stderr and the recipe is not echoed
run:
	@$(MAKE) --no-print-directory install shrinkwrap >&2
	@cd $(FN_BUILD) && $(RUN_ENV) exec $(PY) index.py

test: install
	$(PY) -m pytest tests -q

# coverage-guided fuzzing of the request path (atheris, in-process, the real classifier):
# make fuzz [DURATION=seconds, default 600]; prints executions, coverage and crash
# inputs, which land in tests/fuzz/crashes/ and are replayed by `make test` from then on
.PHONY: fuzz
fuzz: install
	@mkdir -p reports/fuzz
	$(PY) tests/fuzz/fuzz_request.py --seconds $(or $(DURATION),600) --work reports/fuzz

# soak: the function under steady load at ~80% of its measured capacity with ~5% bad
# inputs; prints RSS over time, p99 per minute and lost log lines, fails if RSS grows
# > 32 MiB after warm-up or a line is lost. make soak [DURATION=seconds, default 600]
# [SOAK_ARGS="--rate 40 --env BATCH_SIZE=4"]; summary in reports/soak/soak.json
.PHONY: soak
soak: install shrinkwrap
	$(PY) load/soak.py --build $(FN_BUILD) --artifacts $(ARTIFACTS) --duration $(or $(DURATION),600) \
		--report-dir reports/soak $(SOAK_ARGS)

# SOURCE_COMMIT: the commit the image is built from (stack.yml's build_args)
build:
	SOURCE_COMMIT=$$(git rev-parse HEAD 2>/dev/null) $(FAAS_CLI) build -f stack.yml

deploy:
	$(FAAS_CLI) deploy -f stack.yml

# the image as `faas-cli build` builds it, built with podman against local stand-ins
# for the base images and run as faas-netes runs it (tests/image; needs root, podman,
# runc, debootstrap; `make test` includes it, `-m "not image"` leaves it out)
.PHONY: image
image: install
	$(PY) -m pytest tests/image -q -m image

clean:
	rm -rf build artifacts reports .pytest_cache

# speed: model limit, pipeline limit, served vs seed-style handler at c=1/4/16,
# cold start, logging cost and the target ratios (docs/benchmarks.md); ~10 min (every served variant and the seed started 3 times, interleaved, each variant's pipeline limit taken right after its starts).
# BENCH_ARGS e.g. "--duration 15" or "--env BATCH_SIZE=4"
bench: install
	@mkdir -p reports
	$(PY) load/bench.py --json reports/bench.json $(BENCH_ARGS)

# torchfaas fp32 against the peer servers (LitServe, TorchServe, BentoML), each serving the
# same EfficientNet-Lite0 with its own dynamic batching at its best setting (load/peers/),
# one at a time, interleaved over rounds; each peer's venv under .peers/<name>/ (created on
# the first run, ~1 GB each). ~12 min. PEER_BENCH_ARGS e.g. "--rounds 1 --servers torchfaas,litserve"
.PHONY: bench-peers
bench-peers: install
	@mkdir -p reports
	$(PY) load/peer_bench.py --json reports/peers.json $(PEER_BENCH_ARGS)

# SLO contracts (slo/features) with the SLO tool (slo/: the `torchfaas-slo` command)
# against Loki (LOKI_URL) or a JSONL log (LOG_FILE), at SLO_AT (unix seconds, default now);
# JSON report to SLO_REPORT; SLO_TAGS filters scenarios (e.g. SLO_TAGS="not @production-mix").
# Needs only the slo package (behave), not torch: a venv with just `pip install ./slo` runs it.
# HTML report (verdicts + inline SVG charts) to SLO_HTML (default reports/slo/report.html).
SLO_HTML ?= reports/slo/report.html
slo:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/torchfaas-slo || $(PIP) install -q --disable-pip-version-check -c requirements-dev.txt -e ./slo
	@LOKI_URL="$(LOKI_URL)" LOG_FILE="$(LOG_FILE)" SLO_AT="$(SLO_AT)" SLO_REPORT="$(SLO_REPORT)" SLO_TAGS="$(SLO_TAGS)" \
		SLO_HTML="$(SLO_HTML)" $(VENV)/bin/torchfaas-slo slo/features

# make compare BASELINE=<model_version> CANDIDATE=<model_version> [LOG_FILE=... | LOKI_URL=...]
# [SLO_AT=unix seconds] [COMPARE_REPORT=dir]: the comparison contracts (slo/compare, thresholds
# in the feature text) over the same window; exit 0 promote, 1 hold, 2 cannot judge.
# report.md, report.json, report.html in COMPARE_REPORT (default reports/compare).
COMPARE_REPORT ?= reports/compare
compare:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/torchfaas-slo || $(PIP) install -q --disable-pip-version-check -c requirements-dev.txt -e ./slo
	@LOKI_URL="$(LOKI_URL)" LOG_FILE="$(LOG_FILE)" SLO_AT="$(SLO_AT)" SLO_TAGS="$(SLO_TAGS)" \
		COMPARE_BASELINE="$(BASELINE)" COMPARE_CANDIDATE="$(CANDIDATE)" COMPARE_REPORT="$(COMPARE_REPORT)" \
		SLO_P99_MS="$(or $(SLO_P99_MS),250)" $(VENV)/bin/torchfaas-slo compare slo/compare

# -- load (load/): Locust profiles, capacity finder, the demo ------------------
# HOST=http://... targets a running function or the gateway
# (http://GATEWAY:8080/function/classifier); without it the function is started
# locally for the run (log in the reports folder) and stopped after it.
PROFILE ?= steady
LOAD_HOST = $(filter http://% https://%,$(HOST))
LOCAL_FN = PY=$(PY) FN_BUILD=$(FN_BUILD) PORT=$(PORT) FN_ENV='$(RUN_ENV)' bash load/with_function.sh
with_fn = $(if $(LOAD_HOST),,$(LOCAL_FN) $(1))
target_url = $(or $(LOAD_HOST),http://127.0.0.1:$(PORT))

# make load [HOST=...] [PROFILE=steady|step|spike] [USERS=n] [DURATION=s] [LOCUST_ARGS=...]
# thresholds: MAX_P95_MS, MAX_P99_MS, MAX_FAIL_RATIO (exit 1 when broken)
# WORKERS=n: Locust distributed, one master and n workers (load/distributed.py);
# LOCAL_WORKERS=m starts only m of them here, the others join from other machines
locust_cmd = $(if $(WORKERS),$(PY) load/distributed.py --workers $(WORKERS) \
	$(if $(LOCAL_WORKERS),--local-workers $(LOCAL_WORKERS)) --,$(PY) -m locust -f load/locustfile.py)
load: install shrinkwrap
	@mkdir -p reports/load
	$(call with_fn,reports/load) $(locust_cmd) --headless --only-summary \
		--host $(target_url) --profile $(PROFILE) $(if $(USERS),--peak-users $(USERS)) \
		$(if $(DURATION),--duration $(DURATION)) --csv reports/load/$(PROFILE) \
		--html reports/load/$(PROFILE).html --sent-log reports/load/$(PROFILE)-sent.jsonl $(LOCUST_ARGS)

# make capacity [HOST=...] [PEAK_RPS=...] [SLO_P99_MS=250] [CAPACITY_ARGS=...]
capacity: install shrinkwrap
	$(call with_fn,reports/capacity) $(PY) load/capacity.py --host $(target_url) \
		--json reports/capacity/capacity.json $(CAPACITY_ARGS)

# make review BASE=<git ref>: BASE (a git worktree) and the working tree, each built and
# run locally under the same Locust traffic (REVIEW_USERS, REVIEW_SECONDS, REVIEW_SEED),
# then make compare on the merged log; reports in reports/review (load/review.sh)
review: install
	@PY=$(PY) PORT=$(PORT) FUNCTION=$(FUNCTION) BASE='$(BASE)' MAKE='$(MAKE)' bash load/review.sh

# function + short load + log summary + SLO contracts, all local (DEMO_USERS, DEMO_SECONDS)
demo: install shrinkwrap
	@PY=$(PY) FN_BUILD=$(FN_BUILD) PORT=$(PORT) FN_ENV='$(RUN_ENV)' MAKE='$(MAKE)' bash load/demo.sh
