# Two entry points for a fresh machine: `make demo` (the parity report on the default
# model) and `make test` (ruff + the whole test suite). Both create .venv first.
PY := .venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test lint clean

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

lint: setup
	$(PY) -m ruff check .

# Two workers: much of the suite is single-threaded Python (building thousands of Keras
# layers, eager op dispatch); tests sharing one computed run are grouped onto one worker.
PYTEST := $(PY) -m pytest -n 2 --dist loadgroup --durations=15

test: lint
	$(PYTEST)
	# Keras fixes its backend per process: the Keras tests again on JAX and on torch (torch is the
	# reference), all but the real-preset runs, for CI's time: those run on TensorFlow, and the
	# tiny configs cover every block kind (grouped stride-2 blocks, ImageNet stem, stride on 1x1).
	RESNEXT_TEST_FRAMEWORKS=keras KERAS_BACKEND=jax $(PYTEST) -m 'keras and not first_backend_only and not slow'
	RESNEXT_TEST_FRAMEWORKS=keras KERAS_BACKEND=torch $(PYTEST) -m 'keras and not first_backend_only and not slow'

clean:
	rm -rf .venv .pytest_cache .ruff_cache *.egg-info
