# The two commands: `make run` starts the whole system, `make test` runs every test.
# Everything is installed into .venv from requirements.txt (our own lock; see README).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Bump INSTALL_STEPS when the steps below change: a venv installed by the old steps is redone.
INSTALL_STEPS := 2
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)-$(INSTALL_STEPS)
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)

.PHONY: run stop psql airflow test lint venv check-system clean-data test-deps bench soak schema

run: $(STAMP)
	$(BIN)/python -m devtools.stack run

stop: $(STAMP)
	$(BIN)/python -m devtools.stack stop

psql: $(STAMP)
	@$(BIN)/python -m devtools.stack psql

# Airflow's CLI with the stack's settings: make airflow ARGS="users create --role Viewer ..."
airflow: $(STAMP)
	@$(BIN)/python -m devtools.stack airflow $(ARGS)

# include/sql/schema.sql, rewritten from the migrations (after adding one).
schema: $(STAMP)
	$(BIN)/python -m devtools.schema

# The suite in TEST_PROCESSES processes (pytest-xdist); tests/conftest.py keeps each stack's tests in
# one of them and starts the longest first. The slowest tests' times close the output.
TEST_PROCESSES ?= 3
# `make lint` runs beside the tests: mypy holds one core for ~20 s while pytest starts its processes
# and prepares its data (an idle core then); its output is shown, and its failure fails the target,
# once the tests end.
test: $(STAMP) test-deps
	@lint_log=$$(mktemp); $(MAKE) --no-print-directory lint >$$lint_log 2>&1 & lint=$$!; \
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadgroup --durations=20; tests=$$?; \
	wait $$lint; linted=$$?; cat $$lint_log; rm -f $$lint_log; \
	[ $$linted = 0 ] || echo "error: make lint failed (above)"; \
	[ $$tests = 0 ] && [ $$linted = 0 ]

# Our stack and graphile-worker side by side (BENCH_QUICK=1: a small version in a few minutes).
bench: $(STAMP) test-deps
	$(BIN)/python bench/run.py

# The fault suite of `make test` played many times on one stack under load, faults drawn at random:
# WORKER_SOAK_ROUNDS (20), WORKER_SOAK_SEED (to replay a run), WORKER_SOAK_FAULTS (e.g. "task,SMTP").
soak: $(STAMP) test-deps
	WORKER_SOAK_ROUNDS=$${WORKER_SOAK_ROUNDS:-20} $(BIN)/python -m pytest tests/e2e/test_faults.py -k soak -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check plugins dags devtools tests bench examples
	$(BIN)/ruff format --check plugins dags devtools tests bench examples
	$(BIN)/mypy
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yaml

venv: $(STAMP)

# uv installs the lock in seconds; plain pip is the fallback and gives the same environment.
# Then every module's bytecode is written (uv writes none; a venv installed before may have none):
# without it every process compiles what it imports, each time when PYTHONDONTWRITEBYTECODE is
# set (half of an Airflow component's start-up: 4.9 -> 2.4 CPU-s to import Airflow and ours).
$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found. On Debian: apt-get install python3.11 python3.11-venv"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "error: cannot create a virtualenv. On Debian: apt-get install python3.11-venv"; exit 1; }
	@rm -f $(VENV)/.installed-*
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv || true
	@if [ -x $(BIN)/uv ]; then \
		$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt; \
	else \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt; \
	fi
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null || echo "warning: some modules were not compiled ahead; they compile as they are imported"
	$(BIN)/python -m pip check
	@$(MAKE) --no-print-directory check-system
	@touch $@

check-system:
	@$(BIN)/python -c "import weasyprint" 2>/dev/null || { echo "error: WeasyPrint cannot load Pango. On Debian: apt-get install libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0"; exit 1; }
	@$(BIN)/python -c "from devtools.localpg import find_bin_dir; find_bin_dir()" 2>/dev/null || [ -n "$$WORKER_DATABASE_URL" ] || { echo "error: PostgreSQL server binaries not found. On Debian: apt-get install postgresql (or set WORKER_DATABASE_URL)"; exit 1; }

# What the tests run besides Python: Debian's Chromium for the Jobs page (Playwright drives it and
# never downloads a browser), redis-server for the CeleryExecutor test, npm for graphile-worker.
TEST_PACKAGES := chromium:chromium redis-server:redis-server npm:npm
test-deps:
	@missing=""; for pair in $(TEST_PACKAGES); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
		else echo "error: the tests need:$$missing. On Debian: apt-get install$$missing"; exit 1; fi; \
	fi

clean-data:
	rm -rf .data
