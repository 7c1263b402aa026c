# Every target creates or reuses .venv and installs the project into it first, so each one works
# as the first command on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tenantwatch-installed
LAKE   ?= lake

.PHONY: demo test lint typecheck pytest soak soak-month fuzz bench eval clean sample-logs pictures

# The C extension (pipeline/ingest/_ctscan.c, _credentials.c, _secrets.c) is compiled by the install: a change to it reinstalls.
EXTENSION := pipeline/ingest/_ctscan.c pipeline/ingest/_credentials.c pipeline/ingest/_secrets.c
# The example detector plugin (examples/) is installed beside it: make test runs its tests, which
# check it against the detector contract as any plugin's would; it ships disabled.
PLUGIN := examples/tenantwatch-example-detector
$(STAMP): pyproject.toml $(EXTENSION) pipeline/ingest/_secrets.h $(PLUGIN)/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tenantwatch needs Python >= 3.11 (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing tenantwatch and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/python -m pip install --upgrade pip > $(VENV)/install.log 2>&1 \
	  && $(BIN)/python -m pip install -e '.[dev]' >> $(VENV)/install.log 2>&1 \
	  && $(BIN)/python -m pip install --no-deps -e $(PLUGIN) >> $(VENV)/install.log 2>&1 \
	  || { tail -n 30 $(VENV)/install.log; exit 1; }
	@touch $@

## demo: the whole pipeline on sample_logs/ with its own configuration (nothing from AWS needed)
DEMO_CONFIG := --config sample_logs/tenantwatch.toml
demo: $(STAMP)
	@rm -rf $(LAKE)
	$(BIN)/tenantwatch $(DEMO_CONFIG) ingest sample_logs/AWSLogs sample_logs/apigateway sample_logs/authorizer --lake $(LAKE)
	$(BIN)/tenantwatch $(DEMO_CONFIG) detect --lake $(LAKE)
	$(BIN)/tenantwatch $(DEMO_CONFIG) alert --lake $(LAKE)
	$(BIN)/tenantwatch snapshot verify "$$(ls $(LAKE)/snapshots/*/*/manifest.json | head -n 1)"

## test: lint, type check and the whole test suite (slow tests included)
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile -m "not soak"

## soak: the long variants of the fault, kill and bad-input tests (minutes, not part of make test)
soak: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile -m soak

## soak-month: a simulated month delivered object by object into both deployed functions on moto,
## the schedule ticking every 5 simulated minutes; prints a table (tests/soak_month/). Stops after
## SOAK_MINUTES of wall time (a failure: the month did not finish). SOAK_ARGS: e.g. --days 10.
SOAK_MINUTES ?= 20
SOAK_ARGS ?=
soak-month: $(STAMP)
	$(BIN)/python -m tests.soak_month --max-minutes $(SOAK_MINUTES) $(SOAK_ARGS)

## fuzz: the differential fuzzer (tests/fuzz/) for FUZZ_SECONDS (default 180) against a build of
## the extension with AddressSanitizer and UndefinedBehaviorSanitizer (gcc; FUZZ_SEED to repeat a run)
FUZZ_SECONDS ?= 180
FUZZ_SEED ?=
FUZZ_CC ?= gcc
FUZZ_DIR := build/fuzz
FUZZ_CFLAGS := -g -O1 -std=gnu11 -fPIC -fno-omit-frame-pointer \
  -fsanitize=address,undefined -fno-sanitize-recover=all
fuzz: $(STAMP)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) -c -O2 -fPIC tests/fuzz/coverage.c -o $(FUZZ_DIR)/coverage.o
	$(FUZZ_CC) -shared $(FUZZ_CFLAGS) -fsanitize-coverage=trace-pc \
	  -I"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
	  $(EXTENSION) $(FUZZ_DIR)/coverage.o \
	  -o $(FUZZ_DIR)/_ctscan.so
	LD_PRELOAD="$$($(FUZZ_CC) -print-file-name=libasan.so)" PYTHONMALLOC=malloc \
	  ASAN_OPTIONS=detect_leaks=0:exitcode=86 UBSAN_OPTIONS=print_stacktrace=1:exitcode=86 \
	  $(BIN)/python -m tests.fuzz --extension $(FUZZ_DIR)/_ctscan.so --seconds $(FUZZ_SECONDS) \
	  $(if $(FUZZ_SEED),--seed $(FUZZ_SEED)) \
	  || { rc=$$?; [ $$rc != 86 ] || echo "make fuzz: a sanitizer stopped the run on the batch" \
	       "in $(FUZZ_DIR)/last-batch/ (python -m tests.fuzz --replay ... decodes it again)"; \
	       exit $$rc; }

## bench: speed and memory beside the peers, printed as tables
bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/simulate_speed.py

## eval: tenant resolution and detector precision/recall in every simulated world (several seeds)
eval: $(STAMP)
	$(BIN)/python eval/evaluate.py

## pictures: the README's pictures (docs/img/*.png), drawn from sample_logs/
pictures: $(STAMP)
	$(BIN)/python notebooks/render_pictures.py --out docs/img

## sample-logs: regenerate sample_logs/ (the pooled world, seed 7) byte for byte
sample-logs: $(STAMP)
	rm -rf sample_logs.tmp && $(BIN)/tenantwatch simulate sample_logs.tmp --seed 7 >/dev/null
	rm -rf sample_logs && mv sample_logs.tmp sample_logs

clean:
	rm -rf $(VENV) $(LAKE) build .pytest_cache .ruff_cache .mypy_cache
