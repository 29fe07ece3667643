"""The comparison's presets: tasks, methods, seeds, budget and the settings every method shares.

`python -m experiments.compare --preset=NAME` runs one; its flags replace any value.
"""

import dataclasses
from typing import Tuple

from agents import methods
from agents import wpo


@dataclasses.dataclass(frozen=True)
class Preset:
  """What to run and with which settings."""
  tasks: Tuple[str, ...]
  methods: Tuple[str, ...]
  seeds: Tuple[int, ...]
  num_steps: int
  eval_every: int
  eval_episodes: int
  # Network sizes, batch and replay, shared by every method.
  settings: methods.CommonSettings
  # WPO's and MPO's own settings (make_agent_parts replaces the shared fields by `settings`).
  wpo_config: wpo.WPOConfig


# The paper's Control Suite set without humanoid:run.
PANEL_TASKS = ('cartpole:swingup', 'walker:walk', 'cheetah:run', 'finger:spin', 'reacher:easy',
               'ball_in_cup:catch')

PRESETS = {
    # Tiny networks and replay ratio: a run takes seconds, mostly compilation.
    'smoke': Preset(
        tasks=('cartpole:swingup',), methods=methods.METHODS, seeds=(0,), num_steps=1000,
        eval_every=1000, eval_episodes=1,
        settings=methods.CommonSettings(hidden_sizes=(32, 32), batch_size=32,
                                          samples_per_insert=8.0, min_replay_size=200),
        wpo_config=wpo.make_config('cpu', num_action_samples=4, variable_update_period=100,
                                   num_sgd_steps_per_step=1)),
    # Two easy tasks, one seed, short budgets: about 20 minutes for all ten runs on 2 cores.
    'cpu': Preset(
        tasks=('cartpole:swingup', 'reacher:easy'), methods=methods.METHODS, seeds=(0,),
        num_steps=20_000, eval_every=5000, eval_episodes=2,
        settings=methods.CommonSettings(hidden_sizes=(256, 256), batch_size=128,
                                          samples_per_insert=16.0),
        # One SGD step per learner step, as the Acme baselines take, so updates arrive on the
        # same schedule for every method.
        wpo_config=wpo.make_config('cpu', num_sgd_steps_per_step=1)),
    # Issue 11's panel: six Control Suite tasks × WPO, SAC, MPO × 3 seeds at 100k steps, with
    # run_wpo's `cpu` data settings (batch 256, 0.5 SGD steps per environment step) for every
    # method: the compare `cpu` preset's 0.125 ratio and batch 128 left every method, SAC
    # included, at 140-260 on cartpole:swingup (results/study/README.md).
    'panel': Preset(
        tasks=PANEL_TASKS, methods=('wpo', 'sac', 'mpo'), seeds=(0, 1, 2), num_steps=100_000,
        eval_every=10_000, eval_episodes=5,
        settings=methods.CommonSettings(hidden_sizes=(256, 256), batch_size=256,
                                          samples_per_insert=128.0),
        wpo_config=wpo.make_config('cpu', num_sgd_steps_per_step=1)),
    # The paper's Control Suite set at reference scale.
    'paper': Preset(
        tasks=PANEL_TASKS + ('humanoid:run',),
        methods=methods.METHODS, seeds=(0, 1, 2), num_steps=1_000_000, eval_every=10_000,
        eval_episodes=5, settings=methods.CommonSettings(),
        wpo_config=wpo.PRESETS['default']),
}
