VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install test lint bench profile demo clean k8senv fuzz soak image e2e-kind

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# installed once per change of the dependencies (the package itself is editable): lint, test and
# bench all depend on install, and CI runs all three
INSTALLED := $(VENV)/.installed
install: $(INSTALLED)
$(INSTALLED): $(PY) pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e '.[test]'
	@touch $@

# PYTEST_ARGS='-m "not k8s"' runs everything but the tests against a real API server (no Go needed).
# TEST_JOBS test files run at once (pytest-xdist; a file's tests stay together): most tests wait on
# processes, sockets and metric windows, so three jobs on two cores keep both busy (653 s against
# 800 s with two, measured on one machine the same day); TEST_JOBS=0 runs them one by one.
# --no-loadscope-reorder keeps the order tests/conftest.py gives the files (the longest first);
# by default xdist hands out files with the most tests first, which started the longest file last.
TEST_JOBS ?= 3
test: install
ifeq (,$(findstring not k8s,$(PYTEST_ARGS)))
	@tests/k8senv/build --if-go
endif
	$(PY) -m pytest -q --durations=12 $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder) $(PYTEST_ARGS)

# etcd, kube-apiserver, controller-manager, scheduler, kubectl and kwok from Go modules (docs/testing.md)
k8senv:
	@tests/k8senv/build

# the HTTP/1.1 fuzzer for longer than CI runs it (FUZZ_SECONDS per listener, a random seed it prints)
FUZZ_SECONDS ?= 600
fuzz: install
	$(PY) -m tests.fuzzing --seconds $(FUZZ_SECONDS)

# a sandbox under steady load with a fault every 20 s, for SOAK_MINUTES (not in CI)
SOAK_MINUTES ?= 30
soak: install
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES)

lint: install
	$(VENV)/bin/ruff check .

# every benchmark in one run (about 10 minutes); rewrites the figures section of docs/benchmarks.md
bench: install
	$(PY) -m bench --write docs/benchmarks.md

# where a proxy's CPU goes on the meshed path (cProfile on a CPU clock in both proxies, c=16)
profile: install
	$(PY) -m bench.profile --cpu

# meshdojo's image (control plane, proxy, demo apps) through the Docker engine: `meshdojo images build`
image: install
	$(VENV)/bin/meshdojo images build

# the whole cluster path on a machine with Docker and kind (makes and deletes a kind cluster; not in CI:
# it needs kind's node image from a registry, and says so in one line where it cannot run)
e2e-kind: install
	$(PY) -m tests.e2e_kind

# the start screen (local, kind, minikube or your cluster), then the dashboard
demo: install
	$(VENV)/bin/meshdojo tui

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
