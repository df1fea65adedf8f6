# make demo / make test / make bench / make lint — each works from a fresh clone (creates .venv/).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export RAY_USAGE_STATS_ENABLED := 0
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install browser demo test bench lint clean

install: $(STAMP)

# torch from pip (its CPU build lies in a file on this machine); the rest with uv, the same pins in seconds, not minutes.
# Naming torch==2.13.0 again keeps uv from swapping the CPU build for another; --compile-bytecode as pip does
# (without .pyc files every process, each Ray worker too, compiles its imports anew: minutes, not seconds).
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0 uv==0.13.9
	$(VENV)/bin/uv pip install -q --python $(PY) --compile-bytecode torch==2.13.0 -r requirements.txt
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medflow demo --out medflow-demo

# Headless Chromium for the Prefect UI test: Debian's package (Playwright drives it; no browser download).
browser:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

test: $(STAMP) browser
	$(PY) -m pytest -q --durations=20 -n 2 --dist loadfile -m "not alone"
	$(PY) -m pytest -q --durations=5 -n 2 --dist loadfile -m alone

bench: $(STAMP)
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/quality.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf medflow-demo .pytest_cache
