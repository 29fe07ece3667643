"""Tests for agents/environments.py: task names, wrappers, seeding, and every task stepping."""

import dm_env
from dm_env import specs
import numpy as np
import pytest

from agents import environments

_NUM_RANDOM_STEPS = 3


class _FakeEnvironment(dm_env.Environment):
  """A tiny env with odd bounds and a mixed observation dict; remembers the last action."""

  def __init__(self, minimum=(0.0, -3.0), maximum=(2.0, 5.0)):
    self.last_action = None
    self._minimum = np.asarray(minimum, np.float64)
    self._maximum = np.asarray(maximum, np.float64)

  def _observation(self):
    # Deliberately out of spec order, to check the wrapper follows the spec.
    return {'matrix': np.arange(6.0).reshape(3, 2), 'scalar': 7.0}

  def reset(self):
    return dm_env.restart(self._observation())

  def step(self, action):
    self.last_action = action
    return dm_env.transition(reward=0.5, observation=self._observation(), discount=0.9)

  def observation_spec(self):
    return {'scalar': specs.Array((), np.float64, name='scalar'),
            'matrix': specs.Array((3, 2), np.float64, name='matrix')}

  def action_spec(self):
    return specs.BoundedArray((2,), np.float64, self._minimum, self._maximum, name='action')


def _check_walk(name: str) -> None:
  """Loads `name`, checks the specs, and steps a few random in-box actions."""
  env = environments.make_environment(name, seed=0)
  observation_spec = env.observation_spec()
  action_spec = env.action_spec()
  assert observation_spec.dtype == np.float32 and len(observation_spec.shape) == 1
  assert isinstance(action_spec, specs.BoundedArray) and action_spec.dtype == np.float32
  np.testing.assert_array_equal(action_spec.minimum, -1.0)
  np.testing.assert_array_equal(action_spec.maximum, 1.0)
  timestep = env.reset()
  rng = np.random.default_rng(0)
  for _ in range(_NUM_RANDOM_STEPS):
    observation_spec.validate(timestep.observation)
    assert timestep.observation.dtype == np.float32
    assert np.all(np.isfinite(timestep.observation))
    action = rng.uniform(-1.0, 1.0, action_spec.shape).astype(np.float32)
    timestep = env.step(action)
    assert timestep.reward.dtype == np.float32
  observation_spec.validate(timestep.observation)


# The whole walk (36 tasks) takes a few seconds on 2 cores, so no task needs the `slow` marker.
@pytest.mark.parametrize('name', environments.TASKS)
def test_every_task_loads_and_steps(name):
  _check_walk(name)


def test_task_list_contents():
  names = environments.TASKS
  assert len(names) == len(set(names)) == 28 + 3 + 5
  assert names[:28] == tuple(f'{d}:{t}' for d, t in environments.suite.BENCHMARKING)
  for name in ('cartpole:swingup', 'walker:walk', 'humanoid_CMU:run', 'dog:run', 'dog:fetch'):
    assert name in names


def test_action_rescaling_maps_box_to_real_bounds():
  fake = _FakeEnvironment()
  env = environments.CanonicalActionWrapper(fake)
  env.step(np.array([-1.0, -1.0], np.float32))
  np.testing.assert_allclose(fake.last_action, [0.0, -3.0])
  env.step(np.array([1.0, 1.0], np.float32))
  np.testing.assert_allclose(fake.last_action, [2.0, 5.0])
  env.step(np.array([0.0, 0.5], np.float32))
  np.testing.assert_allclose(fake.last_action, [1.0, 3.0])
  assert fake.last_action.dtype == np.float64


def test_action_rescaling_clips_out_of_box_actions():
  fake = _FakeEnvironment()
  env = environments.CanonicalActionWrapper(fake)
  env.step(np.array([-7.0, 3.0], np.float32))
  np.testing.assert_allclose(fake.last_action, [0.0, 5.0])


def test_action_rescaling_rejects_unbounded_actions():
  with pytest.raises(ValueError, match='finite'):
    environments.CanonicalActionWrapper(_FakeEnvironment(maximum=(2.0, np.inf)))


def test_flat_observation_follows_spec_order():
  env = environments.FlatObservationWrapper(_FakeEnvironment())
  assert env.observation_spec().shape == (7,)
  first = env.reset()
  np.testing.assert_array_equal(first.observation, [7.0, 0, 1, 2, 3, 4, 5])
  assert first.observation.dtype == np.float32 and first.reward is None
  step = env.step(np.zeros(2))
  assert step.reward.dtype == np.float32 and step.discount.dtype == np.float32
  assert step.discount == pytest.approx(0.9)


def test_unknown_name_fails_before_loading(monkeypatch):
  def _no_load(*args, **kwargs):
    raise AssertionError('suite.load must not be called for an unknown name')

  monkeypatch.setattr(environments.suite, 'load', _no_load)
  with pytest.raises(ValueError) as error:
    environments.make_environment('cartpole:swingupp', seed=0)
  message = str(error.value)
  assert "'cartpole:swingupp'" in message
  assert "Did you mean 'cartpole:swingup'?" in message
  for name in environments.TASKS:
    assert name in message


def test_unknown_name_without_close_match_lists_names():
  with pytest.raises(ValueError, match='Valid names: acrobot:swingup') as error:
    environments.validate_task_name('zzz')
  assert 'Did you mean' not in str(error.value)


def test_registered_task_is_valid_and_wrapped(monkeypatch):
  monkeypatch.setattr(environments, '_REGISTRY', {})
  seeds = []

  def _constructor(seed):
    seeds.append(seed)
    return _FakeEnvironment()

  environments.register_task('fake:task', _constructor)
  assert 'fake:task' in environments.task_names()
  env = environments.make_environment('fake:task', seed=3)
  assert seeds == [3]
  assert env.observation_spec().shape == (7,)
  np.testing.assert_array_equal(env.action_spec().minimum, -1.0)
  with pytest.raises(ValueError, match='already defined'):
    environments.register_task('fake:task', _constructor)
  with pytest.raises(ValueError, match='already defined'):
    environments.register_task('walker:walk', _constructor)


def test_same_seed_same_start_different_seed_differs():
  first = environments.make_environment('walker:walk', seed=1).reset().observation
  again = environments.make_environment('walker:walk', seed=1).reset().observation
  other = environments.make_environment('walker:walk', seed=2).reset().observation
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
