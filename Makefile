# The two commands of the README: `make run` and `make test`. Everything else supports them, except
# `make bench-install` and `make bench` (the README's Benchmarks).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.bench-installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# Where `make bench` points the benchmarks (the Redis database is emptied first).
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/15
BENCH_POSTGRES_ADMIN_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
BENCH_DATABASE_PREFIX ?= tars_bench_
# The machine's CPU build of torch lives here; pip takes torch==2.13.0 from it instead of downloading CUDA.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: run test check lint typecheck install bench-install bench clean

run: $(STAMP)
	$(BIN)/tars up

test: $(STAMP)
	$(BIN)/python -m pytest

check: lint typecheck test

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy src

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) torch==2.13.0
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# Everything benchmarks/ needs beyond `make install`: the bench extra, and Debian's wrk, chromium and
# prometheus where they are missing (a benchmark still missing one reports it unavailable and the rest run).
bench-install: $(BENCH_STAMP)
	bash scripts/install-bench-tools.sh

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) torch==2.13.0 -e '.[dev,bench]'
	rm -f $(VENV)/.bench-installed-*
	touch $@

# Every benchmark at a small size, each printing its JSON, then a summary (see benchmarks/run_all.py).
bench: bench-install
	bash scripts/ensure-services.sh
	$(BIN)/python benchmarks/run_all.py --redis-url $(BENCH_REDIS_URL) \
		--postgres-admin-url $(BENCH_POSTGRES_ADMIN_URL) --database-prefix $(BENCH_DATABASE_PREFIX)

clean:
	rm -rf $(VENV) .tars .mypy_cache .ruff_cache .pytest_cache
