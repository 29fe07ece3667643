"""Learner throughput: SGD steps/s of one WPO step at the default scale, plain and fused.

Prints one JSON line per configuration. Default scale: policy and critic 256×3, batch 256,
N=20 action samples, a walker-sized problem (O=24, D=6).

  python -m experiments.bench_learner [--fused=1,8] [--seconds=10]
"""

import json
import platform
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from wpo_jax import learning
from wpo_jax import networks

_FUSED = flags.DEFINE_list('fused', ['1', '8'], 'SGD steps fused per call (lax.scan).')
_SECONDS = flags.DEFINE_float('seconds', 10.0, 'Timed wall-clock per configuration.')
_BATCH = flags.DEFINE_integer('batch_size', 256, 'Transitions per SGD step.')
_SAMPLES = flags.DEFINE_integer('num_action_samples', 20, 'N, actions per state.')
_OBS = flags.DEFINE_integer('observation_dim', 24, 'Observation size O.')
_ACT = flags.DEFINE_integer('action_dim', 6, 'Action size D.')


def _random_batches(key, num_steps, batch_size, observation_dim, action_dim):
  keys = jax.random.split(key, 4)
  shape = (num_steps, batch_size)
  return learning.Transition(
      observation=jax.random.normal(keys[0], shape + (observation_dim,)),
      action=jax.random.uniform(keys[1], shape + (action_dim,), minval=-1.0, maxval=1.0),
      reward=jax.random.uniform(keys[2], shape),
      discount=jnp.full(shape, 0.99**4),
      next_observation=jax.random.normal(keys[3], shape + (observation_dim,)))


def measure(num_fused: int, seconds: float) -> dict:
  """SGD steps/s of `num_fused` steps per jitted call, over about `seconds` of wall-clock."""
  config = learning.LearnerConfig(num_action_samples=_SAMPLES.value)
  learner = learning.make_learner(networks.make_networks(_ACT.value), _ACT.value, config)
  state = learner.init(jax.random.PRNGKey(0), _OBS.value)
  fused = jax.jit(learning.fuse_sgd_steps(learner.sgd_step), donate_argnums=0)
  batches = _random_batches(jax.random.PRNGKey(1), num_fused, _BATCH.value, _OBS.value,
                            _ACT.value)
  compile_start = time.perf_counter()
  state, metrics = fused(state, batches)
  jax.block_until_ready(state)
  compile_seconds = time.perf_counter() - compile_start
  calls = 0
  start = time.perf_counter()
  while time.perf_counter() - start < seconds:
    state, metrics = fused(state, batches)
    calls += 1
    if calls % 8 == 0:
      jax.block_until_ready(state)
  jax.block_until_ready(state)
  elapsed = time.perf_counter() - start
  return {
      'benchmark': 'wpo_learner',
      'fused_steps': num_fused,
      'sgd_steps_per_s': round(calls * num_fused / elapsed, 2),
      'sgd_steps': calls * num_fused,
      'seconds': round(elapsed, 2),
      'first_call_seconds': round(compile_seconds, 2),
      'all_finite': bool(jnp.all(metrics['finite'])),
      'batch_size': _BATCH.value,
      'num_action_samples': _SAMPLES.value,
      'observation_dim': _OBS.value,
      'action_dim': _ACT.value,
      'device': str(jax.devices()[0].device_kind),
      'platform': jax.default_backend(),
      'jax': jax.__version__,
      'host': platform.processor() or platform.machine(),
  }


def main(argv):
  del argv
  for num_fused in _FUSED.value:
    print(json.dumps(measure(int(num_fused), _SECONDS.value)), flush=True)


if __name__ == '__main__':
  app.run(main)
