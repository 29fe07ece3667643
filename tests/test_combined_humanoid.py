"""The combined humanoid stand task: k humanoids, 21·k action dimensions, mean reward."""

import numpy as np
import pytest

from agents import environments
from dm_control import suite


@pytest.mark.parametrize('k', environments.COMBINED_HUMANOID_COUNTS)
def test_combined_humanoid_has_21k_action_dimensions(k):
  environment = environments.make_environment(f'combined_humanoid:stand_{k}', seed=0)
  assert environment.action_spec().shape == (21 * k,)
  single = environments.make_environment('humanoid:stand', seed=0)
  assert environment.observation_spec().shape == (k * single.observation_spec().shape[0],)


def test_reward_is_the_mean_of_the_parts_and_actions_are_split_in_order():
  k, seed = 3, 7
  combined = environments.make_environment(f'combined_humanoid:stand_{k}', seed)
  seeds = np.random.SeedSequence(seed).generate_state(k)
  parts = [suite.load('humanoid', 'stand', task_kwargs={'random': int(s)}) for s in seeds]
  first = combined.reset()
  part_first = [p.reset() for p in parts]
  np.testing.assert_allclose(
      first.observation,
      np.concatenate([np.concatenate([np.asarray(v, np.float32).reshape(-1)
                                      for v in ts.observation.values()]) for ts in part_first]))
  rng = np.random.default_rng(0)
  for _ in range(3):
    action = rng.uniform(-1, 1, size=21 * k).astype(np.float32)
    timestep = combined.step(action)
    part_steps = [p.step(a) for p, a in zip(parts, np.split(action, k))]
    # Identical seeds and actions: each part evolves as the stand-alone humanoid does.
    assert timestep.reward == pytest.approx(np.mean([ts.reward for ts in part_steps]), rel=1e-5)
    assert timestep.discount == pytest.approx(1.0)
