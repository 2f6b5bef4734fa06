# Every command a developer needs is one word: `make help` lists them.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help demo test unit lint typecheck bench bench-stream bench-http bench-billing clean

help:  ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)  ## A day of sample traffic: rated, debited, then streamed through a broker and a worker
	$(BIN)/python -m engine.demo

test: lint typecheck unit  ## Lint, type-check and run every test (benchmarks run once, unmeasured)

unit: $(STAMP)  ## Run the test suite only (installs kamailio + sip-tester first when root)
	bash .ci/install-sip-tools
	$(BIN)/pytest -q

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy (strict) over the packages
	$(BIN)/mypy

bench: $(STAMP)  ## Measure the benchmarks (medians; see README "Performance")
	$(BIN)/pytest tests/benchmarks --benchmark-enable --benchmark-only --benchmark-columns=median,ops,rounds -q

bench-stream: $(STAMP)  ## Worker end to end on the embedded broker (README "Performance")
	$(BIN)/python -m loadtest.stream_bench --records 2000000 --accounts 100000 --shape columnar --workers 2
	$(BIN)/python -m loadtest.stream_bench --records 2000000 --accounts 100000 --shape batch --workers 2
	$(BIN)/python -m loadtest.stream_bench --records 200000 --accounts 20000 --shape single --workers 2
	$(BIN)/python -m loadtest.stream_bench --records 2000000 --accounts 100000 --shape columnar --rate 100000 --workers 2
	$(BIN)/python -m loadtest.stream_bench --records 2000000 --accounts 100000 --shape batch --rate 100000 --workers 2
	$(BIN)/python -m loadtest.stream_bench --records 200000 --accounts 20000 --shape single --rate 10000 --workers 2

bench-http: $(STAMP)  ## authorize over HTTP, open loop (README "Performance")
	$(BIN)/python -m loadtest.http_bench --rps 2000 --seconds 20 --commit-share 0
	$(BIN)/python -m loadtest.http_bench --rps 1000 --seconds 20 --commit-share 0

bench-billing: $(STAMP)  ## Close a cycle for 1 M accounts; render, issue, send (README "Performance")
	$(BIN)/python -m billing.bench --accounts 1000000 --store /tmp/ratewire-bench --repeat 3 --render 2000

clean:  ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .benchmarks
