# Entry points for a fresh machine: `make demo` (the parity report on the default model),
# `make test` (ruff + the fast tier) and `make test-full` (ruff + everything; CI). All create .venv first.
PY := .venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo demo-profile test test-full lint clean

setup: .venv/.installed

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	# torch pinned: 2.13.0 is the local CPU wheel; an unpinned torch pulls GBs of CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# timm, a test dependency, without its torchvision: no CPU torchvision exists for this torch
	# (PyPI's links CUDA libraries and fails to import); timm's ResNet never calls it, and
	# tests/helpers.py stands in for the names timm imports. Its other dependencies come with transformers.
	$(PY) -m pip install -q --no-deps 'timm>=1.0.20'
	# keras-hub, a test dependency, without its text-model dependencies (tensorflow-text,
	# sentencepiece, kagglehub): the tests build its ResNet only.
	$(PY) -m pip install -q --no-deps 'keras-hub>=0.32'
	touch $@

demo: setup
	$(PY) -m parity

# What `make demo` costs here, run by run (time, peak memory, CPU class): docs/results/demo_profile_*.md
demo-profile: setup
	$(PY) -m parity.demo_profile --out docs/results

lint: setup
	$(PY) -m ruff check .
	.venv/bin/lint-imports --no-cache

# Two workers: much of the suite is single-threaded Python (building thousands of Keras
# layers, eager op dispatch); tests sharing one computed run are grouped onto one worker.
PYTEST := $(PY) -m pytest -n 2 --dist loadgroup
# Keras fixes its backend per process: its tests run again on JAX and on torch (torch is the reference).
ON_JAX := RESNEXT_TEST_FRAMEWORKS=keras KERAS_BACKEND=jax $(PYTEST)
ON_TORCH := RESNEXT_TEST_FRAMEWORKS=keras KERAS_BACKEND=torch $(PYTEST)

# The fast tier (aimed at 10 minutes on 2 cores; 23 on the AVX2 machine): every framework x form x check on the tiny configs,
# every CLI, reader and writer once, each ecosystem source once, and a smoke pass of Keras on JAX
# and on torch. A test's tier is its `slow` marker (pyproject.toml), never its file.
test: lint
	$(PYTEST) -m 'not slow' --durations=10
	$(ON_JAX) -m 'keras_smoke and not slow'
	$(ON_TORCH) -m 'keras_smoke and not slow'

# The full tier (under 45 minutes; what CI runs): everything, then the Keras tests on JAX and torch
# but the real-preset runs (they run on TensorFlow; the tiny configs cover every block kind there).
# The slowest tests of the first pass go to docs/results/test_durations.txt.
test-full: lint
	RESNEXT_DURATIONS_FILE=docs/results/test_durations.txt $(PYTEST) --durations=15
	$(ON_JAX) -m 'keras and not first_backend_only and not slow'
	$(ON_TORCH) -m 'keras and not first_backend_only and not slow'

clean:
	rm -rf .venv .pytest_cache .ruff_cache *.egg-info
