"""How often an untrained WPO actor finds a sparse reward, by the colour of its exploration noise.

  python -m experiments.exploration_noise --tasks=cartpole:swingup_sparse,ball_in_cup:catch \\
      --exponents=0,1,2 --init_scales=0.5,1.0 --episodes=50 --out=results/exploration_noise

On a sparse task the critic is flat until some episode earns reward, so ∇aQ ≈ 0 and nothing
moves the policy: what the initial behaviour finds by chance decides whether learning starts.
For each task × noise exponent β (`WPOConfig.exploration_noise_exponent`: 0 white, the paper's;
1 pink; 2 red) × initial σ (`init_scale`), this plays `--episodes` episodes with the real training
actor (`WPOBuilder.make_actor` on `wpo.make_behaviour_policy`, `cpu` preset networks, freshly
initialised, no learning) and counts the episodes that earn any reward.

Writes <out>/exploration_noise.json and <out>/README.md (a table), and prints the table.
"""

from agents import reverb_bind  # pylint: disable=g-bad-import-order
if __name__ == '__main__':
  reverb_bind.ensure_preloaded()  # As every entry point does; this one starts no server.
  from runner import process  # pylint: disable=g-import-not-at-top
  process.prepare()  # MUJOCO_GL and dm-acme's patches, before dm_control and acme are used.

import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import os
import sys
import time
from typing import Any, Dict, List

from absl import app
from absl import flags
from acme import specs
import jax
import numpy as np

from agents import atomic_files
from agents import environments
from agents import wpo

_TASKS = flags.DEFINE_list('tasks', ['cartpole:swingup_sparse', 'ball_in_cup:catch'],
                           'Control Suite tasks, domain:task.')
_EXPONENTS = flags.DEFINE_list('exponents', ['0', '1', '2'], 'Noise exponents β.')
_SCALES = flags.DEFINE_list('init_scales', ['0.5', '1.0'], 'Initial policy σ values.')
_EPISODES = flags.DEFINE_integer('episodes', 50, 'Episodes per setting.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the environments, networks and actors.')
_OUT = flags.DEFINE_string('out', 'runs/exploration_noise', 'Output directory.')


class _FixedPolicy:
  """A VariableSource serving one set of policy parameters."""

  def __init__(self, params):
    self._params = params

  def get_variables(self, names):
    return [self._params for _ in names]


def measure(task: str, exponent: float, init_scale: float, episodes: int,
            seed: int) -> Dict[str, Any]:
  """Returns of `episodes` episodes of an untrained training actor; see the module docstring."""
  environment = environments.make_environment(task, seed)
  spec = specs.make_environment_spec(environment)
  config = wpo.make_config('cpu', init_scale=init_scale, exploration_noise_exponent=exponent)
  networks = wpo.make_networks(spec, config)
  params = networks.networks.policy.init(
      jax.random.PRNGKey(seed), np.zeros((1, networks.observation_dim), np.float32))
  # No adder: the actor acts as in training (make_behaviour_policy) and writes no replay.
  actor = wpo.WPOBuilder(config).make_actor(jax.random.PRNGKey(seed + 1),
                                            wpo.make_behaviour_policy(networks, config),
                                            variable_source=_FixedPolicy(params))
  returns = []
  for _ in range(episodes):
    timestep = environment.reset()
    actor.observe_first(timestep)
    total = 0.0
    while not timestep.last():
      timestep = environment.step(actor.select_action(timestep.observation))
      total += float(timestep.reward)
    returns.append(total)
  returns = np.asarray(returns)
  return {'task': task, 'exponent': exponent, 'init_scale': init_scale, 'episodes': episodes,
          'seed': seed, 'rewarded_episodes': int(np.sum(returns > 0)),
          'mean_return': float(returns.mean()), 'max_return': float(returns.max())}


def table(rows: List[Dict[str, Any]]) -> str:
  lines = ['| task | β | initial σ | episodes with reward | mean return | max return |',
           '|---|---|---|---|---|---|']
  lines += [f'| {r["task"]} | {r["exponent"]:g} | {r["init_scale"]:g} | '
            f'{r["rewarded_episodes"]} / {r["episodes"]} | {r["mean_return"]:.1f} | '
            f'{r["max_return"]:.1f} |' for r in rows]
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  try:  # Every input is checked before any episode; a bad one is named.
    for task in _TASKS.value:
      environments.validate_task_name(task)
    exponents = [wpo.parse_field_value('exploration_noise_exponent', x) for x in _EXPONENTS.value]
    scales = [wpo.parse_field_value('init_scale', x) for x in _SCALES.value]
    for exponent in exponents:
      wpo.make_config('cpu', exploration_noise_exponent=exponent)
    for scale in scales:
      wpo.make_config('cpu', init_scale=scale)
    if _EPISODES.value < 1:
      raise ValueError(f'--episodes={_EPISODES.value} is invalid: it must be >= 1.')
  except ValueError as error:
    sys.exit(f'error: {error}')
  start, rows = time.time(), []
  for task in _TASKS.value:
    for exponent in exponents:
      for scale in scales:
        rows.append(measure(task, exponent, scale, _EPISODES.value, _SEED.value))
        print(rows[-1], flush=True)
  os.makedirs(_OUT.value, exist_ok=True)
  atomic_files.atomic_write(os.path.join(_OUT.value, 'exploration_noise.json'),
                            json.dumps({'rows': rows, 'seconds': round(time.time() - start, 1)},
                                       indent=1).encode())
  text = table(rows)
  atomic_files.atomic_write(os.path.join(_OUT.value, 'README.md'), (
      '# Sparse reward found by an untrained WPO actor, by exploration noise\n\n'
      'Written by `python -m experiments.exploration_noise` (see its docstring): β is '
      '`exploration_noise_exponent` (0 white, 1 pink, 2 red), initial σ is `init_scale`.\n\n'
      + text).encode())
  print(text)


if __name__ == '__main__':
  app.run(main)
