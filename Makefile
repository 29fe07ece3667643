# One set-up path: `make run` (main job) and `make test` (the test suite) set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup setup-gpu run test test-slow test-core-latest bench bench-gpu mutants clean

setup: $(STAMP)

$(STAMP): requirements.lock setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.lock
	# dm-acme 0.4.0 pins dm-launchpad, which has no Python 3.11 wheel; agents/acme_compat.py
	# patches the rest.
	$(PY) -m pip install --no-deps dm-acme==0.4.0
	$(PY) -m pip install --no-deps -e .
	touch $(STAMP)

# The main job: a short local WPO run on a Control Suite task (output in runs/quickstart; run it
# again to resume, or delete the folder to start afresh).
run: setup
	$(PY) -m experiments.run_wpo --env=cartpole:swingup --preset=cpu --num_steps=20000 \
	  --eval_every=5000 --eval_episodes=2 --workdir=runs/quickstart

test: setup
	$(PY) -m pytest

# Long tests (learning runs, all Control Suite domains); not part of CI.
test-slow: setup
	$(PY) -m pytest -m slow

# The pure core on the newest JAX/Flax/Optax/chex from PyPI (no TensorFlow stack), with
# deprecations as errors: the core must keep running on current JAX.
LATEST := .venv-latest
test-core-latest:
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --upgrade jax flax optax chex pytest absl-py
	PYTHONPATH=. $(LATEST)/bin/python -W error::DeprecationWarning -m pytest -c /dev/null -q \
	  tests/test_losses.py tests/test_learning.py tests/test_purity.py

bench: setup
	$(PY) -m experiments.bench_learner

# Plants each known wiring bug of tools/mutants.py in a temporary copy, one at a time, and runs
# the tests meant to catch it; fails if one survives. Not part of `make test` (9-17 min on 2
# shared cores).
mutants: setup
	$(PY) -m tools.mutants

# The same stack plus the CUDA plugin for jax 0.4.34 (requirements-gpu.lock), in its own venv so
# the CPU one is left as it is. Use it as $(GPU_VENV)/bin/python; on a machine without a GPU it
# runs on the CPU and says so (README, "On a GPU").
GPU_VENV ?= .venv-gpu
setup-gpu: $(GPU_VENV)/.installed-gpu

$(GPU_VENV)/.installed-gpu: requirements.lock requirements-gpu.lock setup.py
	$(MAKE) setup VENV=$(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install -r requirements-gpu.lock
	$(GPU_VENV)/bin/python -m wpo_jax.devices
	touch $@

# The learner benchmark's GPU cases with whatever python has jax (the GPU image: current
# jax+CUDA, flax, optax, chex; no TensorFlow needed); results in bench_gpu.jsonl.
bench-gpu:
	PYTHON=$(PYTHON) bash experiments/gpu_bench.sh

clean:
	rm -rf $(VENV) $(LATEST) $(GPU_VENV)
