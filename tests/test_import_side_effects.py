"""No side effects at import: every library module imports without changing JAX or os.environ;
the explicit `runner.process.prepare()` (entry points, conftest, Ray workers) makes both changes."""

import json
import os
import subprocess
import sys

from test_purity import _library_modules
from test_purity import REPO


def test_importing_every_library_module_changes_neither_jax_nor_the_environment():
  """A fresh interpreter imports every module of wpo_jax, agents and runner: the JAX attributes
  that agents.acme_compat adds and os.environ stay as they were until runner.process.prepare()."""
  modules = sorted('.'.join(p.relative_to(REPO).with_suffix('').parts).replace('.__init__', '')
                   for p in _library_modules())
  code = f"""
import importlib, json, os, sys, warnings
import jax, jax.numpy as jnp
# TensorFlow and Ray set variables of their own when imported (TF_CPP_MIN_LOG_LEVEL,
# RAY_CLIENT_MODE, ...): imported first, so the check below is about our modules only.
import tensorflow, ray
def jax_state():
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return [hasattr(jax, 'tree_multimap'), hasattr(jax, 'xla'), hasattr(jax, 'pxla'),
            hasattr(jnp, 'DeviceArray')]
before_jax, before_env = jax_state(), dict(os.environ)
for name in {modules!r}:
  importlib.import_module(name)
after_import = [jax_state(), dict(os.environ) == before_env, 'MUJOCO_GL' in os.environ]
from runner import process
process.prepare()
print(json.dumps({{'before': before_jax, 'after_import': after_import, 'after_prepare': jax_state(),
                  'mujoco_gl': os.environ.get('MUJOCO_GL')}}))
"""
  environment = {k: v for k, v in os.environ.items() if k != 'MUJOCO_GL'}
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=REPO, env=environment, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  state = json.loads(result.stdout.strip().splitlines()[-1])
  assert state['before'] == [False, False, False, False], state  # JAX 0.4.34 lacks them all.
  assert state['after_import'] == [state['before'], True, False], state
  assert state['after_prepare'] == [True, True, True, True], state
  assert state['mujoco_gl'] in ('egl', 'osmesa'), state
