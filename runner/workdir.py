"""A run's directory: every file name in it, its counts, and its settings file (run.json).

  <workdir>/run.json                    RUN_SETTINGS: what the run's results depend on (below),
                                        and LEARNER_DEVICE, the latest launch's learner device
  <workdir>/checkpoints/                CHECKPOINTS: learner state, counts, replay
  <workdir>/logs/<label>/logs.csv       log_csv(label): Acme CSV logs (actor, learner, evaluator)
  <workdir>/logs/counter/totals.json    TOTALS: a distributed launch's counts and rates
  <workdir>/tensorboard/                TENSORBOARD
  <workdir>/learning_curve.png          LEARNING_CURVE, redrawn at every evaluation
  <workdir>/evaluation.mp4              EVALUATION_VIDEO, at the end where a renderer exists
  <workdir>/processes/<name>.json       PROCESSES: where each Ray worker runs
  <workdir>/DONE                        DONE: a comparison run finished at a budget

run.json holds one schema for every launcher (`run_settings`): method, task, seed, the WPO/MPO
config (None for other methods), the settings a comparison shares across methods (None for a
single run) and the evaluation cadence. Workdirs written before this schema (keys 'env' and
'config' from run_wpo, or no 'evaluation' from the comparison) are read as the same settings.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional

from agents import atomic_files
from agents import wpo
from wpo_jax import devices

RUN_SETTINGS = 'run.json'
CHECKPOINTS = 'checkpoints'
LOGS = 'logs'
LOG_FILE = 'logs.csv'
TENSORBOARD = 'tensorboard'
LEARNING_CURVE = 'learning_curve.png'
EVALUATION_VIDEO = 'evaluation.mp4'
PROCESSES = 'processes'
TOTALS = os.path.join(LOGS, 'counter', 'totals.json')
DONE = 'DONE'
# run.json's record of the latest launch's learner device: not a setting (a run may resume on
# another machine), so the resume check skips it.
LEARNER_DEVICE = 'learner_device'

# The run's counts, all in one Acme Counter and checkpointed with the learner. WALLCLOCK sums the
# wall-clock seconds over resumed launches; every log row written after a tick carries it.
WALLCLOCK = 'wallclock_seconds'
EVALUATOR_EPISODES = 'evaluator_episodes'
# The evaluation schedule's place: the next evaluation is due at the first evaluation point at or
# past this actor-step count (`runner.evaluation_schedule`); each finished evaluation moves it
# to one past the count it began at. Checkpointed with the counts, so a resume knows it exactly.
EVALUATION_DUE_FROM = 'evaluator_due_from'
COUNT_KEYS = ('actor_steps', 'actor_episodes', 'learner_steps', 'learner_walltime',
              'evaluator_steps', EVALUATOR_EPISODES, EVALUATION_DUE_FROM, WALLCLOCK)


def log_csv(workdir: str, label: str) -> str:
  """The Acme CSV log that `label` ('actor', 'learner', 'evaluator', 'actor_<i>') writes."""
  return os.path.join(workdir, LOGS, label, LOG_FILE)


def finished_steps(directory: str, marker: str = DONE) -> Optional[int]:
  """The budget a comparison run was finished with (its DONE marker, named `marker`), or None."""
  try:
    with open(os.path.join(directory, marker)) as f:
      return int(json.load(f)['num_steps'])
  except (OSError, ValueError, KeyError, TypeError):
    return None


def run_settings(method: str, task: str, seed: int, eval_every: int, eval_episodes: int,
                 wpo_config: Any = None, shared_settings: Any = None) -> Dict[str, Any]:
  """run.json's content: JSON types only (tuples become lists), as read back from the file.

  Args:
    method: 'wpo', 'mpo', 'sac', ...
    task, seed: the Control Suite task and the run's seed.
    eval_every, eval_episodes: the evaluation cadence (the learning curve depends on it).
    wpo_config: WPO's or MPO's `WPOConfig`; None for other methods.
    shared_settings: a comparison's `CommonSettings` (shared by every method); None otherwise.
  """
  asdict = lambda value: None if value is None else dataclasses.asdict(value)
  settings = {'method': method, 'task': task, 'seed': seed,
              'evaluation': {'every': eval_every, 'episodes': eval_episodes},
              'wpo_config': asdict(wpo_config), 'shared_settings': asdict(shared_settings)}
  return json.loads(json.dumps(settings))


def _upgrade(stored: Dict[str, Any], current: Dict[str, Any]) -> Dict[str, Any]:
  """A run.json of any earlier layout as `run_settings` writes it today.

  run_wpo wrote {'env', 'seed', 'preset', 'config'}; the comparison wrote {'method', 'task',
  'seed', 'eval_every', 'eval_episodes', 'settings', 'wpo_config' (WPO and MPO only)}. Neither
  layout is rewritten on disk. What an old layout did not record (run_wpo's evaluation cadence;
  the preset name, which the config itself holds) was never checked and is not now. Config fields
  added since the file was written take their defaults: the run used those.
  """
  upgraded = dict(stored)
  if 'config' in upgraded and 'env' in upgraded:  # run_wpo before the one schema.
    upgraded = {'method': 'wpo', 'task': upgraded['env'], 'seed': upgraded['seed'],
                'evaluation': current.get('evaluation'), 'wpo_config': upgraded['config'],
                'shared_settings': None}
  elif 'evaluation' not in upgraded and 'eval_every' in upgraded:  # The comparison's.
    upgraded['evaluation'] = {'every': upgraded.pop('eval_every'),
                              'episodes': upgraded.pop('eval_episodes', None)}
    upgraded['shared_settings'] = upgraded.pop('settings', None)
    upgraded.setdefault('wpo_config', None)
  if isinstance(upgraded.get('wpo_config'), dict):
    defaults = json.loads(json.dumps(dataclasses.asdict(wpo.WPOConfig())))
    upgraded['wpo_config'] = {**defaults, **upgraded['wpo_config']}
  return upgraded


def read_settings(workdir: str,
                  current: Optional[Dict[str, Any]] = None) -> Optional[Dict[str, Any]]:
  """The workdir's run.json in today's schema (see `_upgrade`); None if it has none.

  Args:
    workdir: the run's directory.
    current: the settings of the launch about to resume it, which fill in what an old layout did
      not record.
  """
  try:
    with open(os.path.join(workdir, RUN_SETTINGS)) as f:
      stored = json.load(f)
  except FileNotFoundError:
    return None
  return _upgrade(stored, current or {})


class SettingsMismatch(ValueError):
  """The workdir holds a run made with other settings."""

  def __init__(self, workdir: str, changed: List[str]):
    super().__init__(f'{workdir} holds a run with different settings ({changed})')
    self.changed = changed


def _differing_paths(previous: Dict[str, Any], current: Dict[str, Any], prefix: str = ''):
  """Dotted paths of the leaves in which two nested dicts differ, sorted."""
  paths = []
  for key in sorted(set(previous) | set(current)):
    old, new = previous.get(key), current.get(key)
    if isinstance(old, dict) and isinstance(new, dict):
      paths += _differing_paths(old, new, f'{prefix}{key}.')
    elif old != new:
      paths.append(f'{prefix}{key}')
  return paths


def changed_settings(workdir: str, settings: Dict[str, Any]) -> Optional[List[str]]:
  """Where `settings` differ from the workdir's run.json, as dotted paths
  ('shared_settings.batch_size'); None if the workdir holds no run."""
  previous = read_settings(workdir, settings)
  if previous is None:
    return None
  previous = {k: v for k, v in previous.items() if k != LEARNER_DEVICE}
  return _differing_paths(previous, {k: v for k, v in settings.items() if k != LEARNER_DEVICE})


def check_or_write_settings(workdir: str, settings: Dict[str, Any]) -> bool:
  """Writes run.json (atomically) on a fresh run; on resume refuses other settings.

  Returns:
    Whether the workdir held this run already (a resume).

  Raises:
    SettingsMismatch: naming the run.json keys that differ.
  """
  changed = changed_settings(workdir, settings)
  if changed:
    raise SettingsMismatch(workdir, changed)
  if changed is not None:
    return True
  atomic_files.atomic_write(os.path.join(workdir, RUN_SETTINGS),
                            json.dumps(settings, indent=1).encode())
  return False


def announce_learner_device(workdir: str, device: Optional[str] = None) -> str:
  """Prints 'learner device: <device>' and records it in run.json (if written). Returns the line.

  Args:
    workdir: the run's directory.
    device: `wpo_jax.devices.learner_device()` as the learner's process reported it; by default
      this process's (the local run's learner runs here).
  """
  device = device or devices.learner_device()
  line = f'learner device: {device}'
  print(line, flush=True)
  path = os.path.join(workdir, RUN_SETTINGS)
  if os.path.exists(path):
    with open(path) as f:
      settings = json.load(f)
    settings[LEARNER_DEVICE] = device
    atomic_files.atomic_write(path, json.dumps(settings, indent=1).encode())
  return line
