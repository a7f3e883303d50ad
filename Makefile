# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint mutants redis bench bench-scale bench-cluster clean

run: $(STAMP)  ## set up, then serve every channel with demo cards (Ctrl-C stops; data kept in .run/redis; PORTS="jd=8701 pos=8683" moves channels; ADMIN=HOST:PORT moves the dashboard, ADMIN=off drops it; `switch clock` moves its test clock)
	@scripts/ensure-redis-server --optional
	$(BIN)/switch serve --demo --test-clock --admin $(or $(ADMIN),127.0.0.1:8680) $(addprefix --port ,$(PORTS))

test: $(STAMP)  ## set up, then lint and run the whole suite
	@scripts/ensure-redis-server
	@scripts/ensure-chromium
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

mutants: $(STAMP)  ## mutation testing of the modules that guard money and input (see docs/testing.md)
	@scripts/ensure-redis-server
	nice $(BIN)/python scripts/mutants.py $(MUTANTS_ARGS)

bench: $(STAMP)  ## measure the switch next to its ceilings, side by side (a few minutes)
	@scripts/ensure-redis-server
	$(BIN)/loadtest bench

bench-scale: $(STAMP)  ## saturation throughput vs the reference server, open-loop latency at half the sustainable rate, Redis round trips per call, scaling with connections, memory per card (a few minutes)
	@scripts/ensure-redis-server
	$(BIN)/loadtest bench-scale

bench-cluster: $(STAMP)  ## one Redis against a 3-master Redis Cluster, switch --workers 1 and 2, side by side: throughput, p50/p99, CPU per answer of every process, one card's ceiling (a few minutes; docs/capacity.md)
	@scripts/ensure-redis-server
	$(BIN)/loadtest bench-cluster $(BENCH_ARGS)

redis:  ## install redis-server if it is missing
	@scripts/ensure-redis-server

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (3.11+)"; exit 1; }
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

clean:  ## remove the venv, caches and .run/ (the private Redis' kept data too)
	rm -rf $(VENV) .run .pytest_cache .hypothesis .ruff_cache *.egg-info
