# The two commands of the README: `make demo` and `make test`. Both set up a fresh machine from nothing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= .demo
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= WARNING

.PHONY: demo test install clean

$(BIN)/tthc: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/tthc

install: $(BIN)/tthc

demo: install
	$(BIN)/tthc sample --out $(DEMO)/inbox --seed 7
	$(BIN)/tthc run --inbox $(DEMO)/inbox --warehouse $(DEMO)/warehouse --as-of 2025-12-31
	$(BIN)/tthc status --warehouse $(DEMO)/warehouse

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO) .pytest_cache
