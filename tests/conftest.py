"""The explicit process set-up every entry point makes (MUJOCO_GL, dm-acme patches), for tests.

Not where acme is absent (`make test-core-latest`: the core alone, on the newest JAX): there the
JAX aliases are not needed, and the core must pass without them.
"""

import importlib.util

if importlib.util.find_spec('acme') is not None:
  from runner import process  # pylint: disable=g-import-not-at-top
  process.prepare()

