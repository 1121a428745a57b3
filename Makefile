# callvault: `make serve` runs it with embedded defaults, `make test` runs every check CI runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= --quiet --disable-pip-version-check --no-input

.PHONY: install serve test lint pytest browser bench schema-snapshot prompts clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	touch $@

serve: install
	$(VENV)/bin/callvault serve

test: lint pytest

lint: install
	$(VENV)/bin/ruff check service prompts retention tests
	$(VENV)/bin/ruff format --check service prompts retention tests
	$(VENV)/bin/mypy

pytest: install browser
	$(PY) -m pytest

# The /qa browser tests drive Debian's Chromium (no browser download): install it if missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# Performance goals, measured side by side with baselines (about 5 minutes on 2 cores).
bench: install
	$(PY) -m tests.bench

# After adding a migration: rewrite the schema snapshot the tests compare against.
schema-snapshot: install
	$(PY) -m tests.schema > tests/schema.sql.new && mv tests/schema.sql.new tests/schema.sql

# After adding a prompt version: synthesise its source speech (needs Debian's espeak-ng).
prompts: install
	$(PY) -m prompts.synth

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
