"""Re-runs panel runs' policies on many common episodes of one task (a side measurement).

The panel's protocol scores a run by the mean of 5 evaluation episodes. On tasks whose episodes
either succeed or fail (reacher:easy: reach and hold the target, return ≈ 900–1000, or not, ≈ 0;
ball_in_cup:catch alike), 5 episodes give a noisy figure. This script runs each given run's newest
checkpoint with the evaluator's deterministic action on the same EPISODES initial states (one
environment seed, 2026), so the policies are compared on identical episodes.

Usage (from the repository root, with the runs' checkpoints, which are not committed):
  MUJOCO_GL=egl .venv/bin/python results/panel/analysis/policy_returns.py reacher:easy 50 \
      wpo=runs/panel/runs/reacher-easy/wpo/seed_0 sac=runs/panel/runs/reacher-easy/sac/seed_0 ...
A run directory's newest checkpoint is used: to measure an earlier one, point at a directory
holding only that `checkpoints/ckpt-*` folder.

Each run acts with the policy the harness's evaluator uses (`agents.methods.make_agent_parts`'s
`evaluation_policy`), given the variables its learner hands the actors (WPO/MPO: the online
policy; SAC: its policy parameters). The panel's WPO config differs from the default only in
fields that do not change the evaluation policy's form (network sizes come from the settings).
"""

import glob
import json
import os
import sys
import time

import agents  # noqa: F401  (dm-acme patches, before acme)
from acme import specs
from flax import serialization
import jax
import numpy as np

from agents import environments
from agents import methods
from agents import wpo

ENV_SEED = 2026
HIDDEN = (256, 256)  # The panel's networks.


def newest_learner_state(run_directory):
  """(learner state as nested dicts, environment steps it was saved at) of the newest checkpoint."""
  newest = sorted(glob.glob(os.path.join(run_directory, 'checkpoints', 'ckpt-*')))[-1]
  with open(os.path.join(newest, 'commit.json')) as f:
    steps = json.load(f)['counts']['actor_steps']
  with open(os.path.join(newest, 'learner.msgpack'), 'rb') as f:
    return serialization.msgpack_restore(f.read()), steps


def deterministic_policy(method, state, spec):
  """observation [O] -> the evaluator's action [D]: the harness's own evaluation policy."""
  settings = methods.CommonSettings(hidden_sizes=HIDDEN)
  parts = methods.make_agent_parts(method, settings, wpo.WPOConfig(), spec, lambda: None)
  # The variables the learner hands its actors: WPO/MPO's online policy, SAC's policy.
  params = state['params']['policy'] if method in ('wpo', 'mpo') else state['policy_params']
  key = jax.random.PRNGKey(0)  # The evaluation policy's mode does not use it.
  return jax.jit(lambda o: parts.evaluation_policy(params, key, o))


def episode_returns(task, act, episodes):
  env = environments.make_environment(task, seed=ENV_SEED)
  returns = []
  for _ in range(episodes):
    timestep, total = env.reset(), 0.0
    while not timestep.last():
      timestep = env.step(np.asarray(act(np.asarray(timestep.observation, np.float32))))
      total += timestep.reward or 0.0
    returns.append(total)
  return np.array(returns)


def main(argv):
  task, episodes, runs = argv[1], int(argv[2]), [a.split('=', 1) for a in argv[3:]]
  spec = specs.make_environment_spec(environments.make_environment(task, seed=ENV_SEED))
  reached = {}
  for method, directory in runs:
    start = time.time()
    state, steps = newest_learner_state(directory)
    returns = episode_returns(task, deterministic_policy(method, state, spec), episodes)
    reached[method] = returns >= 500
    print(f'{method} ({directory}, at {steps:.0f} steps): mean {returns.mean():.0f} ± '
          f'{returns.std(ddof=1) / np.sqrt(episodes):.0f} (standard error) over {episodes} '
          f'episodes; ≥ 500 in {reached[method].sum()}, < 100 in {(returns < 100).sum()}; '
          f'{time.time() - start:.0f} s')
  names = list(reached)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      print(f'{a} vs {b}: episodes ≥ 500 for both {np.sum(reached[a] & reached[b])}, {a} only '
            f'{np.sum(reached[a] & ~reached[b])}, {b} only {np.sum(~reached[a] & reached[b])}, '
            f'neither {np.sum(~reached[a] & ~reached[b])}')


if __name__ == '__main__':
  main(sys.argv)
