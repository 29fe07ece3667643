"""The flags and main of `python -m experiments.run_wpo` (console script `wpo-train`).

Imported by `experiments/run_wpo.py` after the process set-up; see that module for usage.
"""

import dataclasses
import functools
import json
import os
import sys
from typing import Any, Dict

from absl import flags

from agents import checkpointing
from agents import environments
from agents import methods
from agents import wpo
from experiments import policy_flags
from runner import distributed
from runner import experiment
from runner import local
from runner import ray_cluster
from runner import workdir as workdir_lib

_ENV = flags.DEFINE_string('env', 'cartpole:swingup', 'Control Suite task, domain:task.')
_NUM_STEPS = flags.DEFINE_integer('num_steps', 100_000, 'Environment steps to train for.')
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed (environment, networks, acting).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory; re-use it to resume.')
_EVAL_EVERY = flags.DEFINE_integer('eval_every', 10_000, 'Environment steps between evaluations.')
_EVAL_EPISODES = flags.DEFINE_integer('eval_episodes', 5, 'Episodes per evaluation (mean action).')
_PRESET = flags.DEFINE_enum('preset', 'default', sorted(wpo.PRESETS),
                            'WPO settings: "default" (reference scale) or "cpu" (2-core machine).')
_OVERRIDES = flags.DEFINE_multi_string(
    'config', [], 'WPOConfig field override, name=value (repeatable), e.g. --config=batch_size=128.')
_CHECKPOINT_MINUTES = flags.DEFINE_float('checkpoint_every_minutes', 5.0,
                                         'Wall-clock minutes between checkpoints.')
_VIDEO = flags.DEFINE_bool('video', True, 'Render one evaluation episode to MP4 at the end.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar on the terminal.')
# Distributed runs (runner/distributed.py): the same run, one Ray process per part.
_DISTRIBUTED = flags.DEFINE_bool('distributed', False,
                                 'Run replay, learner, actors and evaluator as Ray processes.')
_NUM_ACTORS = flags.DEFINE_integer('num_actors', 2, 'With --distributed: training actors.')
_RAY_ADDRESS = flags.DEFINE_string(
    'ray_address', None, 'With --distributed: "auto" or host:port of a running Ray cluster to '
    'join; unset, Ray starts on this machine, on loopback only.')
_REVERB_PORT = flags.DEFINE_integer('reverb_port', 0, 'With --distributed: the Reverb server\'s '
                                    'TCP port on the launcher\'s node (0: any free port).')


class UsageError(ValueError):
  """Bad command-line input, detected before any work starts."""


def parse_overrides(overrides) -> Dict[str, Any]:
  """['batch_size=128', 'policy_layers=64,64'] -> typed values for WPOConfig fields."""
  fields = {f.name for f in dataclasses.fields(wpo.WPOConfig)}
  parsed = {}
  for item in overrides:
    name, sep, text = item.partition('=')
    if not sep or name not in fields:
      raise UsageError(f'--config={item!r}: expected name=value with name one of '
                       f'{sorted(fields)}.')
    try:
      parsed[name] = wpo.parse_field_value(name, text)
    except ValueError as error:
      raise UsageError(f'--config={item!r}: {error}') from None
  return parsed


def validate_flags() -> wpo.WPOConfig:
  """Checks every input and returns the agent config; raises UsageError before any work."""
  if not _WORKDIR.value:
    raise UsageError('--workdir is required: the directory for logs, checkpoints and plots '
                     '(re-use it to resume a run).')
  try:
    environments.validate_task_name(_ENV.value)
  except ValueError as error:
    raise UsageError(f'--env: {error}') from None
  for flag, value, minimum in ((_NUM_STEPS, _NUM_STEPS.value, 1),
                               (_EVAL_EVERY, _EVAL_EVERY.value, 1),
                               (_EVAL_EPISODES, _EVAL_EPISODES.value, 1)):
    if value < minimum:
      raise UsageError(f'--{flag.name}={value} is invalid: it must be >= {minimum}.')
  if _CHECKPOINT_MINUTES.value <= 0:
    raise UsageError('--checkpoint_every_minutes must be > 0.')
  overrides = parse_overrides(_OVERRIDES.value)
  both = sorted(set(overrides) & set(policy_flags.given()))
  if both:
    raise UsageError(f'--{both[0]} and --config={both[0]}=... are both given; use one.')
  try:
    config = policy_flags.apply(wpo.make_config(_PRESET.value, **overrides))
  except ValueError as error:
    raise UsageError(str(error)) from None
  validate_cluster_flags()
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UsageError(f'--workdir={workdir} exists and is not a directory.')
  return config


def _cluster() -> ray_cluster.Cluster:
  return ray_cluster.Cluster(num_actors=_NUM_ACTORS.value, ray_address=_RAY_ADDRESS.value,
                             reverb_port=_REVERB_PORT.value)


def validate_cluster_flags() -> None:
  """The distributed flags: only with --distributed, and valid (Ray address reachable)."""
  cluster_flags = (_NUM_ACTORS, _RAY_ADDRESS, _REVERB_PORT)
  if not _DISTRIBUTED.value:
    given = [f'--{flag.name}' for flag in cluster_flags if flag.present]
    if given:
      raise UsageError(f'{", ".join(given)}: valid only with --distributed.')
    return
  try:
    ray_cluster.validate(_cluster())
  except ValueError as error:
    raise UsageError(str(error)) from None


def make_experiment(config: wpo.WPOConfig, workdir: str) -> experiment.ExperimentConfig:
  """The run the flags describe; its run.json records the WPO config and evaluation cadence."""
  settings = workdir_lib.run_settings('wpo', _ENV.value, _SEED.value, _EVAL_EVERY.value,
                                      _EVAL_EPISODES.value, wpo_config=config)
  return experiment.ExperimentConfig(
      make_parts=functools.partial(methods.wpo_agent_parts, config), task=_ENV.value,
      seed=_SEED.value, workdir=workdir, num_steps=_NUM_STEPS.value, eval_every=_EVAL_EVERY.value,
      eval_episodes=_EVAL_EPISODES.value, settings=settings, title=f'WPO on {_ENV.value}',
      checkpoint_every_minutes=_CHECKPOINT_MINUTES.value, progress=_PROGRESS.value,
      video=_VIDEO.value)


def check_resumable(run: experiment.ExperimentConfig) -> None:
  """A workdir holding a run must hold this one (its run.json); raises UsageError."""
  changed = workdir_lib.changed_settings(run.workdir, run.settings)
  if changed:
    raise UsageError(f'--workdir={run.workdir} holds a run with different settings ({changed}); '
                     'use a new --workdir, or the same --env/--seed/--preset/--config/'
                     '--policy/--eval_every/--eval_episodes to resume it.')


def main(argv):
  del argv
  try:
    config = validate_flags()
    run = make_experiment(config, os.path.abspath(os.path.expanduser(_WORKDIR.value)))
    check_resumable(run)
  except UsageError as error:
    sys.exit(f'error: {error}')
  try:
    if _DISTRIBUTED.value:
      summary = distributed.run(run, _cluster())
    else:
      summary = local.run(run)
  except wpo.NonFiniteLossError as error:
    sys.exit(f'error: {error}\nThe last good checkpoint in {run.workdir}/{workdir_lib.CHECKPOINTS} '
             'was left in place; fix the cause and re-run with the same --workdir to resume.')
  except checkpointing.CheckpointError as error:  # A full disk, or no usable checkpoint.
    sys.exit(f'error: {error}')
  except KeyboardInterrupt:
    # The run printed "Checkpoint written: <path>" if the stop came after its start-up.
    sys.exit(f'Interrupted; re-run with --workdir={run.workdir} to resume from its last '
             'checkpoint.')
  print(json.dumps({'env': _ENV.value, 'seed': _SEED.value, **summary}))

