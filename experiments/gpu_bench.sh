#!/usr/bin/env bash
# The learner benchmark's GPU cases in one command (`make bench-gpu`), for a GPU machine whose
# Python has jax with CUDA, flax, optax and chex (TensorFlow, Reverb and Acme are not needed).
# Writes one JSON line per case to $BENCH_OUT (default bench_gpu.jsonl) as each case finishes,
# so an interrupted run keeps the cases done. Paper-scale cases (the 5,000 SGD steps/s target)
# run first. Extra arguments go to experiments/bench_learner.py (e.g. --peak_tflops=989).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
BENCH_OUT="${BENCH_OUT:-bench_gpu.jsonl}"
# Memory on demand, not 75% of the GPU at start.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m wpo_jax.devices
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m experiments.bench_learner \
  --cases="${BENCH_CASES:-gpu}" --seconds="${BENCH_SECONDS:-3}" "$@" | tee "$BENCH_OUT"
echo "Results: $BENCH_OUT"
