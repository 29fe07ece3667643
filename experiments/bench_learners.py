"""Learner throughput across methods, in one process: SGD steps/s of each Acme learner, as a ratio
to WPO's.

  python -m experiments.bench_learners [--methods=wpo,mpo,sac] [--hidden_sizes=256,256,256]

Every method is built by `agents.methods.make_agent_parts` with the same hidden-layer sizes and
batch size, and its Acme learner is fed synthetic random transitions of a walker-sized problem
(O=24, D=6) through an iterator of `reverb.ReplaySample`s, as Reverb would deliver them. What is
timed is `learner.step()` as training calls it (host-to-device copy of the batch, the jitted
update, the learner's own bookkeeping), after a first step that compiles. Prints one JSON line per
method; `ratio_to_wpo` is its steps/s divided by WPO's (WPO is measured first when listed).
"""

import itertools
import json
import time
from typing import Any, Dict, Iterator, Optional

from absl import app
from absl import flags

from agents import methods  # pylint: disable=g-bad-import-order  (patches acme first)
from acme import specs
from acme import types
from acme.utils import counting
from acme.utils import loggers
import jax
import numpy as np
import reverb

from agents import wpo

_METHODS = flags.DEFINE_list('methods', ['wpo', 'mpo', 'sac'],
                             f'Methods to measure, of {methods.METHODS}.')
_HIDDEN = flags.DEFINE_list('hidden_sizes', ['256', '256', '256'],
                            'Hidden-layer sizes of every policy and critic.')
_BATCH = flags.DEFINE_integer('batch_size', 256, 'Transitions per SGD step.')
_SAMPLES = flags.DEFINE_integer('num_action_samples', 20, 'N, actions per state (WPO, MPO).')
_OBS = flags.DEFINE_integer('observation_dim', 24, 'Observation size O.')
_ACT = flags.DEFINE_integer('action_dim', 6, 'Action size D.')
_SECONDS = flags.DEFINE_float('seconds', 10.0, 'Timed wall-clock per method.')

# Distinct batches cycled by the iterator, so that no method can benefit from one cached batch.
_NUM_BATCHES = 8


def synthetic_spec(observation_dim: int, action_dim: int) -> specs.EnvironmentSpec:
  """The spec `agents.environments` gives a task with these sizes."""
  return specs.EnvironmentSpec(
      observations=specs.Array((observation_dim,), np.float32, name='observations'),
      actions=specs.BoundedArray((action_dim,), np.float32, -1.0, 1.0, name='action'),
      rewards=specs.Array((), np.float32, name='reward'),
      discounts=specs.BoundedArray((), np.float32, 0.0, 1.0, name='discount'))


def synthetic_replay(spec: specs.EnvironmentSpec, batch_size: int,
                     seed: int = 0) -> Iterator[reverb.ReplaySample]:
  """Endless [B] batches of random transitions within the spec, as Reverb samples."""
  rng = np.random.default_rng(seed)
  observation_shape = (batch_size,) + spec.observations.shape
  action_shape = (batch_size,) + spec.actions.shape

  def batch() -> reverb.ReplaySample:
    transition = types.Transition(
        observation=rng.standard_normal(observation_shape, np.float32),
        action=rng.uniform(-1.0, 1.0, action_shape).astype(np.float32),
        reward=rng.uniform(0.0, 1.0, batch_size).astype(np.float32),
        discount=np.full(batch_size, 0.99, np.float32),
        next_observation=rng.standard_normal(observation_shape, np.float32),
        extras=())
    return reverb.ReplaySample(info=None, data=transition)

  return itertools.cycle([batch() for _ in range(_NUM_BATCHES)])


def make_learner(method: str, spec: specs.EnvironmentSpec, settings: methods.CommonSettings,
                 wpo_config: wpo.WPOConfig):
  """The method's Acme learner on synthetic replay, logging nowhere; and its SGD steps per step."""
  parts = methods.make_agent_parts(method, settings, wpo_config, spec, loggers.NoOpLogger)
  learner = parts.builder.make_learner(jax.random.PRNGKey(0), parts.networks,
                                       synthetic_replay(spec, parts.transitions_per_learner_step),
                                       counter=counting.Counter())
  # WPO can fuse k steps into one learner step, drawing k·B transitions.
  return learner, parts.transitions_per_learner_step // settings.batch_size


def measure(method: str, spec: specs.EnvironmentSpec, settings: methods.CommonSettings,
            wpo_config: wpo.WPOConfig, seconds: float) -> Dict[str, Any]:
  """SGD steps/s of `method`'s learner over about `seconds`, after one compiling step."""
  learner, sgd_steps_per_step = make_learner(method, spec, settings, wpo_config)
  start = time.perf_counter()
  learner.step()
  jax.block_until_ready(learner.save())
  first_step_seconds = time.perf_counter() - start

  steps = 0
  start = time.perf_counter()
  while time.perf_counter() - start < seconds:
    learner.step()
    steps += 1
    # Acme's learners dispatch asynchronously; bound the queue so the clock tracks the work.
    if steps % 8 == 0:
      jax.block_until_ready(learner.save())
  jax.block_until_ready(learner.save())
  elapsed = time.perf_counter() - start
  return {'method': method,
          'sgd_steps_per_s': round(steps * sgd_steps_per_step / elapsed, 2),
          'sgd_steps': steps * sgd_steps_per_step,
          'seconds': round(elapsed, 2),
          'first_step_seconds': round(first_step_seconds, 2)}


def run(methods, settings: methods.CommonSettings, wpo_config: wpo.WPOConfig,
        spec: specs.EnvironmentSpec, seconds: float):
  """Yields one result per method, WPO first when listed, each with its ratio to WPO."""
  ordered = sorted(methods, key=lambda m: m != 'wpo')
  wpo_rate: Optional[float] = None
  for method in ordered:
    result = measure(method, spec, settings, wpo_config, seconds)
    if method == 'wpo':
      wpo_rate = result['sgd_steps_per_s']
    result['ratio_to_wpo'] = None if wpo_rate is None else round(
        result['sgd_steps_per_s'] / wpo_rate, 3)
    yield result


def main(argv):
  del argv
  for method in _METHODS.value:
    methods.validate_method(method)
  settings = methods.CommonSettings(hidden_sizes=tuple(int(h) for h in _HIDDEN.value),
                                      batch_size=_BATCH.value)
  wpo_config = wpo.make_config('default', num_action_samples=_SAMPLES.value)
  spec = synthetic_spec(_OBS.value, _ACT.value)
  context = {'benchmark': 'learner_throughput', 'batch_size': settings.batch_size,
             'hidden_sizes': list(settings.hidden_sizes),
             'num_action_samples': _SAMPLES.value, 'observation_dim': _OBS.value,
             'action_dim': _ACT.value, 'device': str(jax.devices()[0].device_kind),
             'platform': jax.default_backend(), 'jax': jax.__version__}
  for result in run(_METHODS.value, settings, wpo_config, spec, _SECONDS.value):
    print(json.dumps({**result, **context}), flush=True)


if __name__ == '__main__':
  app.run(main)
