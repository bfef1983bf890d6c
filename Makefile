# The two commands of the README: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# The machine's CPU build of torch lives here; pip takes torch==2.13.0 from it instead of downloading CUDA.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: run test check lint typecheck install clean

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

clean:
	rm -rf $(VENV) .tars .mypy_cache .ruff_cache .pytest_cache
