"""The learner's device pipeline: prefetch, deferred metric checks, non-finite stops, device line."""

import dataclasses
import functools
import json
import os
import subprocess
import sys

import agents  # noqa: F401  (applies the dm-acme patches before acme is imported)
from acme import specs
from acme.testing import fakes
from acme.utils import loggers
import jax
import numpy as np
import pytest
import reverb

from agents import checkpointing
from runner import workdir as workdir_lib
from agents import wpo
from wpo_jax import learning
from wpo_jax import pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS, ACT = 3, 2


def _config(**overrides):
  return wpo.make_config('default', **{
      'num_action_samples': 4, 'policy_layers': (16, 16), 'critic_layers': (16, 16),
      'batch_size': 8, 'num_sgd_steps_per_step': 3, **overrides})


def _networks(config):
  environment = fakes.ContinuousEnvironment(action_dim=ACT, observation_dim=OBS, bounded=True)
  return wpo.make_networks(specs.make_environment_spec(environment), config)


def _samples(config, num_calls, nan_call=None, seed=0):
  """[k·B]-transition replay samples, distinct per call; call `nan_call` has NaN rewards."""
  rng = np.random.default_rng(seed)
  size = config.num_sgd_steps_per_step * config.batch_size
  samples = []
  for call in range(num_calls):
    reward = rng.normal(size=(size,)).astype(np.float32)
    if call == nan_call:
      reward[:] = np.nan
    samples.append(reverb.ReplaySample(info=None, data=learning.Transition(
        observation=rng.normal(size=(size, OBS)).astype(np.float32),
        action=rng.uniform(-1, 1, size=(size, ACT)).astype(np.float32),
        reward=reward, discount=np.full((size,), 0.9, np.float32),
        next_observation=rng.normal(size=(size, OBS)).astype(np.float32))))
  return samples


@functools.lru_cache
def _plain_learner(learner_config, networks):
  pure = learning.make_learner(networks.networks, networks.action_dim, learner_config)
  return pure.init, jax.jit(learning.fuse_sgd_steps(pure.sgd_step))


def _plain_states(config, samples):
  """The state after each call of an independent loop: jit of k fused steps, no pipeline."""
  networks = _networks(config)
  init, fused = _plain_learner(config.learner_config(), networks)
  state = init(jax.random.PRNGKey(0), networks.observation_dim)
  k, batch = config.num_sgd_steps_per_step, config.batch_size
  states = [jax.device_get(state)]
  for sample in samples:
    batches = jax.tree_util.tree_map(lambda x: x.reshape((k, batch) + x.shape[1:]), sample.data)
    state, _ = fused(state, learning.Transition(*batches))
    states.append(jax.device_get(state))
  return states


def _learner(config, samples, logger=None):
  return wpo.WPOLearner(_networks(config), config, jax.random.PRNGKey(0), iter(samples),
                        logger=logger or loggers.NoOpLogger())


def _assert_trees_equal(actual, expected):
  jax.tree_util.tree_map(np.testing.assert_array_equal, actual, expected)


def test_device_prefetch_keeps_items_ahead_and_in_order():
  pulled = []

  def source():
    for i in range(4):
      pulled.append(i)
      yield {'x': np.full((2,), i, np.float32)}

  prefetched = pipeline.device_prefetch(source(), ahead=1)
  first = next(prefetched)
  assert pulled == [0, 1]  # Item 1 is already on the device while item 0 is used.
  assert isinstance(first['x'], jax.Array)
  rest = [int(item['x'][0]) for item in prefetched]
  assert [int(first['x'][0])] + rest == [0, 1, 2, 3]
  assert [int(x['x'][0]) for x in pipeline.device_prefetch(source(), ahead=0)] == [0, 1, 2, 3]
  with pytest.raises(ValueError, match='ahead'):
    next(pipeline.device_prefetch(source(), ahead=-1))


def test_metrics_every_is_validated():
  with pytest.raises(ValueError, match='metrics_every'):
    wpo.WPOConfig(metrics_every=0)


def test_prefetching_learner_equals_plain_loop_after_k_m_steps():
  m = 4
  config = _config(metrics_every=m)
  samples = _samples(config, m)
  deferred_rows, every_call_rows = loggers.InMemoryLogger(), loggers.InMemoryLogger()
  deferred = _learner(config, samples, deferred_rows)
  every_call = _learner(dataclasses.replace(config, metrics_every=1), samples, every_call_rows)
  for call in range(m):
    deferred.step()
    every_call.step()
    # Nothing is fetched (or logged) before the m-th call; the plain learner logs every call.
    assert len(deferred_rows.data) == (m if call == m - 1 else 0)
    assert len(every_call_rows.data) == call + 1

  expected = _plain_states(config, samples)[-1]
  assert int(expected.steps) == config.num_sgd_steps_per_step * m
  _assert_trees_equal(deferred.save(), expected)
  _assert_trees_equal(every_call.save(), expected)
  # The same metric values, row for row; only the timing columns differ.
  timing = {'sgd_steps_per_s', 'walltime'}
  for row, plain in zip(deferred_rows.data, every_call_rows.data):
    assert set(row) == set(plain)
    assert {k: v for k, v in row.items() if k not in timing} == {
        k: v for k, v in plain.items() if k not in timing}
  assert [r['steps'] for r in deferred_rows.data] == [3, 6, 9, 12]


def test_variables_and_steps_read_by_others_are_checked_first():
  config = _config(metrics_every=100)
  samples = _samples(config, 2)
  learner = _learner(config, samples)
  learner.step()
  learner.step()
  expected = _plain_states(config, samples)[-1]
  # Read before the 100th call: the pending calls are checked and their state handed out.
  assert learner.steps == 2 * config.num_sgd_steps_per_step
  _assert_trees_equal(learner.get_variables(['policy', 'critic']),
                      [expected.params.policy, expected.params.critic])


@pytest.mark.parametrize('metrics_every, checkpoint_every, found_by', [
    (4, 3, 'save'),  # Found when the checkpoint after call 6 checks the pending calls 4..6.
    (2, 4, 'step'),  # Found by the check after call 6, before the checkpoint after call 8.
])
def test_non_finite_loss_mid_run_stops_with_last_good_checkpoint_intact(
    tmp_path, metrics_every, checkpoint_every, found_by):
  nan_call = 5  # The sixth call's batch has NaN rewards.
  config = _config(metrics_every=metrics_every)
  samples = _samples(config, 12, nan_call=nan_call)
  learner = _learner(config, samples)
  checkpointer = checkpointing.RunCheckpointer(str(tmp_path / 'checkpoints'))
  calls = 0
  with pytest.raises(wpo.NonFiniteLossError, match='non-finite') as raised:
    while True:  # The runners' loop: step, and checkpoint on a schedule.
      learner.step()
      calls += 1
      if calls % checkpoint_every == 0:
        checkpointer.save(learner.save(), {'learner_steps': learner.steps})
  # `calls` counts finished calls: the sixth is still running when `step` raises in it.
  assert calls == {'save': nan_call + 1, 'step': nan_call}[found_by]
  k = config.num_sgd_steps_per_step
  assert f'steps {nan_call * k + 1}..{(nan_call + 1) * k}' in str(raised.value)

  last_good = (nan_call // checkpoint_every) * checkpoint_every
  restored = checkpointing.RunCheckpointer(str(tmp_path / 'checkpoints')).restore(
      jax.device_get(_learner(config, []).save()))
  assert restored.counts == {'learner_steps': last_good * k}
  plain = _plain_states(config, samples[:last_good])
  _assert_trees_equal(restored.learner_state, plain[-1])
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(restored.learner_state))
  with pytest.raises(wpo.NonFiniteLossError):  # A failed learner hands out no state to save.
    learner.save()

  # Resuming from it continues on good data exactly as the plain loop does.
  resumed = _learner(config, samples[last_good:nan_call])
  resumed.restore(restored.learner_state)
  for _ in range(nan_call - last_good):
    resumed.step()
  _assert_trees_equal(resumed.save(), _plain_states(config, samples[:nan_call])[-1])


def test_device_line_is_recorded_and_ignored_by_the_resume_check(tmp_path, capsys):
  settings = workdir_lib.run_settings('wpo', 'cartpole:swingup', 0, 5000, 2,
                                      wpo_config=wpo.make_config('cpu'))
  assert workdir_lib.check_or_write_settings(str(tmp_path), settings) is False
  assert workdir_lib.announce_learner_device(str(tmp_path)) == 'learner device: cpu'
  assert capsys.readouterr().out == 'learner device: cpu\n'
  with open(tmp_path / 'run.json') as f:
    assert json.load(f)[workdir_lib.LEARNER_DEVICE] == 'cpu'
  # A run resumed on another machine: the recorded device is the newest launch's, not a setting.
  workdir_lib.announce_learner_device(str(tmp_path), 'NVIDIA H200')
  assert workdir_lib.check_or_write_settings(str(tmp_path), settings) is True
  with open(tmp_path / 'run.json') as f:
    written = json.load(f)
  assert written[workdir_lib.LEARNER_DEVICE] == 'NVIDIA H200'
  assert {k: written[k] for k in settings} == settings


# Runs the benchmark's smoke cases with TensorFlow, Reverb, Acme, Ray and agents unimportable.
_BENCH_WITHOUT_THE_AGENT_STACK = """
import sys
class Block:
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in ('tensorflow', 'reverb', 'acme', 'ray', 'agents'):
      raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
sys.argv = ['bench_learner', '--cases=smoke', '--seconds=0.2']
from absl import app
from experiments import bench_learner
app.run(bench_learner.main)
"""


def test_learner_benchmark_needs_only_the_core():
  """The GPU image has jax, flax, optax and chex but no TensorFlow, Reverb or Acme."""
  result = subprocess.run([sys.executable, '-c', _BENCH_WITHOUT_THE_AGENT_STACK], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{')]
  assert [line['pipeline'] for line in lines] == ['pure_step', 'end_to_end']
  assert all(line['sgd_steps_per_s'] > 0 and line['all_finite'] for line in lines)
  assert all(0 < line['flop_fraction'] < 1 for line in lines)
  assert lines[1]['vs_pure_step'] > 0
