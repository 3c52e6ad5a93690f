VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install test lint bench demo clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(PY)
	$(PIP) install -q -c constraints.txt -e '.[test]'

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m bench.meshed_path
	$(PY) -m bench.sandbox_up
	$(PY) -m bench.policy_bench
	$(PY) -m bench.telemetry_bench
	$(PY) -m bench.tui_bench

demo: install
	$(VENV)/bin/meshdojo up

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
