# The two commands a newcomer needs:  make demo   and   make test
# Everything else here is what they depend on.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench system-deps clean

demo: $(STAMP)
	$(PY) -m huizhen demo

test: $(STAMP) system-deps lint typecheck
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check mediaserver signaling huizhen config devices recorder consult_api contracts tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q -m "not browser"

bench: $(STAMP)
	$(PY) -m benchmarks.forwarding
	$(PY) -m benchmarks.hl7_ingest
	$(PY) -m benchmarks.vitals_latency
	$(PY) -m benchmarks.hl7_waveform_latency
	$(PY) -m benchmarks.media_port_guard
	$(PY) -m benchmarks.join_herd
	$(PY) -m benchmarks.records_read --rate 50

# Debian's Chromium (browser tests) and Noto Sans CJK (Chinese labels in the teaching video).
system-deps:
	./scripts/ensure-system-packages

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
