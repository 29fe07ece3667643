"""Train WPO on a Control Suite task: one process with an in-process Reverb server (the default).

  python -m experiments.run_wpo --env=cartpole:swingup --num_steps=100000 --workdir=/tmp/wpo

Writes under --workdir: Acme CSV logs (logs/<label>/logs.csv for actor, learner, evaluator),
TensorBoard events (tensorboard/), learning_curve.png (refreshed at every evaluation),
evaluation.mp4 (at the end, where a headless renderer exists), run.json (the run's settings) and
checkpoints/ (learner state, counts, replay). Re-running with the same --workdir resumes.
"""

from agents import video  # pylint: disable=g-bad-import-order
video.configure_headless_rendering()  # MUJOCO_GL must be set before dm_control is imported.

import dataclasses  # pylint: disable=g-import-not-at-top,wrong-import-position
import json
import os
import sys
import time
from typing import Any, Dict, Optional

from absl import app
from absl import flags
from absl import logging
from acme import specs
from acme.agents import agent as acme_agent
from acme.environment_loop import EnvironmentLoop
from acme.utils import counting
from acme.utils import loggers
import jax
import reverb
import tqdm

from agents import checkpointing
from agents import environments
from agents import wpo
from experiments import plots

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

COUNT_KEYS = ('actor_steps', 'actor_episodes', 'learner_steps', 'learner_walltime',
              'evaluator_steps', 'evaluator_episodes')


class UsageError(ValueError):
  """Bad command-line input, detected before any work starts."""


def parse_overrides(overrides) -> Dict[str, Any]:
  """['batch_size=128', 'policy_layers=64,64'] -> typed values for WPOConfig fields."""
  fields = {f.name: f for f in dataclasses.fields(wpo.WPOConfig)}
  defaults = wpo.WPOConfig()
  parsed = {}
  for item in overrides:
    name, sep, text = item.partition('=')
    if not sep or name not in fields:
      raise UsageError(f'--config={item!r}: expected name=value with name one of '
                       f'{sorted(fields)}.')
    default = getattr(defaults, name)
    try:
      if isinstance(default, bool):
        if text.lower() not in ('true', 'false', '1', '0'):
          raise ValueError(text)
        value = text.lower() in ('true', '1')
      elif isinstance(default, tuple):
        value = tuple(int(x) for x in text.split(',') if x)
      elif default is None or isinstance(default, float):
        value = None if text.lower() == 'none' else float(text)
      else:
        value = type(default)(text)
    except ValueError:
      raise UsageError(f'--config={item!r}: cannot read {text!r} as the type of {name} '
                       f'(default {default!r}).') from None
    parsed[name] = value
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
  try:
    config = wpo.make_config(_PRESET.value, **parse_overrides(_OVERRIDES.value))
  except ValueError as error:
    raise UsageError(str(error)) from None
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UsageError(f'--workdir={workdir} exists and is not a directory.')
  return config


def run_settings(config: wpo.WPOConfig) -> Dict[str, Any]:
  return {'env': _ENV.value, 'seed': _SEED.value, 'preset': _PRESET.value,
          'config': dataclasses.asdict(config)}


def check_or_write_settings(workdir: str, settings: Dict[str, Any]) -> bool:
  """Writes run.json on a fresh run; on resume refuses settings that differ. Returns resuming."""
  path = os.path.join(workdir, 'run.json')
  current = json.loads(json.dumps(settings))  # Tuples become lists, as in the file.
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    if previous != current:
      changed = sorted(k for k in set(previous) | set(current)
                       if previous.get(k) != current.get(k))
      raise UsageError(f'--workdir={workdir} holds a run with different settings ({changed}); '
                       'use a new --workdir, or the same --env/--seed/--preset/--config to '
                       'resume it.')
    return True
  os.makedirs(workdir, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(current, f, indent=1)
  return False


def make_logger(workdir: str, label: str, time_delta: float = 0.0) -> loggers.Logger:
  """Acme CSV (logs/<label>/logs.csv, flushed every row) + TensorBoard, optionally throttled."""
  # Imported here: the TensorBoard writer pulls in TensorFlow's summary ops.
  from acme.utils.loggers import tf_summary  # pylint: disable=g-import-not-at-top
  logger = loggers.Dispatcher([
      loggers.CSVLogger(workdir, label=label, add_uid=False, flush_every=1),
      tf_summary.TFSummaryLogger(os.path.join(workdir, 'tensorboard'), label=label),
  ], serialize_fn=loggers.to_numpy)
  logger = loggers.NoneFilter(logger)
  if time_delta > 0:
    logger = loggers.TimeFilter(logger, time_delta)
  return logger


class _ProgressLogger(loggers.Logger):
  """Forwards episode logs and advances a terminal progress bar with the latest returns."""

  def __init__(self, inner: loggers.Logger, bar: Optional[tqdm.tqdm], counter, label: str):
    self._inner, self._bar, self._counter, self._label = inner, bar, counter, label

  def write(self, data):
    self._inner.write(data)
    if self._bar is None:
      return
    if self._label == 'actor':
      self._bar.n = int(data.get('actor_steps', self._bar.n))
      self._bar.set_postfix_str(
          f'return {float(data["episode_return"]):.1f} '
          f'sgd {self._counter.get_counts().get("learner_steps", 0)}', refresh=False)
      self._bar.refresh()
    else:
      self._bar.write(f'evaluation at {int(data.get("actor_steps", 0))} steps: return '
                      f'{float(data["episode_return"]):.1f}')

  def close(self):
    self._inner.close()


def main(argv):
  del argv
  try:
    config = validate_flags()
    workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
    resuming = check_or_write_settings(workdir, run_settings(config))
  except UsageError as error:
    sys.exit(f'error: {error}')
  run_local(config, workdir, resuming)


def single_process_replay(config: wpo.WPOConfig) -> wpo.WPOConfig:
  """Replay settings for an actor and a learner that share one thread.

  Reverb's rate limiter must never block there: a blocked insert or sample would wait for the
  very thread it blocks. As in Acme's local agents, the table admits sampling from one item with
  unbounded slack, and `acme.agents.agent.Agent` enforces min_replay_size and samples_per_insert
  by counting observations instead.
  """
  return dataclasses.replace(config, min_replay_size=1,
                             samples_per_insert_tolerance_rate=float('inf'))


def run_local(config: wpo.WPOConfig, workdir: str, resuming: bool) -> None:
  seed = _SEED.value
  environment = environments.make_environment(_ENV.value, seed)
  eval_environment = environments.make_environment(_ENV.value, seed + 1_000_003)
  spec = specs.make_environment_spec(environment)
  networks = wpo.make_networks(spec, config)
  builder = wpo.WPOBuilder(single_process_replay(config),
                           logger_fn=lambda: make_logger(workdir, 'learner', 1.0))
  checkpointer = checkpointing.RunCheckpointer(os.path.join(workdir, 'checkpoints'))

  # Reverb listens on every interface (it has no bind option); this process reaches it over
  # loopback. The server reloads the newest replay checkpoint in the directory on start.
  server = reverb.Server(builder.make_replay_tables(spec), port=None,
                         checkpointer=checkpointer.replay_checkpointer())
  client = reverb.Client(f'localhost:{server.port}')

  counter = counting.Counter()
  counter.increment(**{k: 0 for k in COUNT_KEYS})  # Stable CSV columns from the first row.
  key = jax.random.PRNGKey(seed)
  learner_key, actor_key, eval_key = jax.random.split(key, 3)
  learner = builder.make_learner(learner_key, networks, builder.make_dataset_iterator(client),
                                 counter=counting.Counter(counter, 'learner', time_delta=0.))
  restored = checkpointer.restore(learner.save())
  if restored is not None:
    learner.restore(restored.learner_state)
    counter.restore({'counts': dict(restored.counts), 'cache': {}})
    logging.info('Resumed from %s at %s.', checkpointer.replay_directory, restored.counts)
  elif resuming:
    logging.info('No checkpoint in %s yet: starting from scratch.', workdir)

  replay_size = int(client.server_info()[config.replay_table_name].current_size)
  actor = builder.make_actor(actor_key, wpo.make_policy(networks, evaluation=False),
                             builder.make_adder(client), variable_source=learner)
  agent = acme_agent.Agent(
      actor, learner,
      # A restored replay is already warm: learning continues at once.
      min_observations=max(0, config.min_replay_size - replay_size),
      observations_per_step=(config.batch_size * config.num_sgd_steps_per_step /
                             config.samples_per_insert))
  evaluator = builder.make_actor(eval_key, wpo.make_policy(networks, evaluation=True),
                                 variable_source=learner)

  start_steps = int(counter.get_counts()['actor_steps'])
  bar = tqdm.tqdm(total=_NUM_STEPS.value, initial=start_steps, unit='step', smoothing=0.1,
                  dynamic_ncols=True, disable=not _PROGRESS.value)
  train_loop = EnvironmentLoop(
      environment, agent, counter=counting.Counter(counter, 'actor', time_delta=0.),
      logger=_ProgressLogger(make_logger(workdir, 'actor'), bar, counter, 'actor'))
  eval_loop = EnvironmentLoop(
      eval_environment, evaluator, counter=counting.Counter(counter, 'evaluator', time_delta=0.),
      logger=_ProgressLogger(make_logger(workdir, 'evaluator'), bar, counter, 'evaluator'))
  curve_path = os.path.join(workdir, 'learning_curve.png')
  evaluator_csv = os.path.join(workdir, 'logs', 'evaluator', 'logs.csv')

  def evaluate():
    eval_loop.run(num_episodes=_EVAL_EPISODES.value)
    plots.plot_learning_curve(evaluator_csv, curve_path, f'WPO on {_ENV.value}')

  def checkpoint():
    path = checkpointer.save(learner.save(), counter.get_counts(), client)
    logging.info('Checkpoint %s', path)

  steps = start_steps
  if steps == 0:
    evaluate()  # The untrained policy: the curve's starting point.
  last_checkpoint = time.time()
  try:
    while steps < _NUM_STEPS.value:
      next_eval = (steps // _EVAL_EVERY.value + 1) * _EVAL_EVERY.value
      train_loop.run(num_steps=min(next_eval, _NUM_STEPS.value) - steps)
      steps = int(counter.get_counts()['actor_steps'])
      evaluate()
      if time.time() - last_checkpoint > 60 * _CHECKPOINT_MINUTES.value:
        checkpoint()
        last_checkpoint = time.time()
  except wpo.NonFiniteLossError as error:
    bar.close()
    sys.exit(f'error: {error}\nThe last good checkpoint in {checkpointer.directory} '
             'was left in place; fix the cause and re-run with the same --workdir to resume.')
  except KeyboardInterrupt:
    bar.close()
    checkpoint()
    sys.exit(f'Interrupted: checkpoint written; re-run with --workdir={workdir} to resume.')
  bar.close()
  checkpoint()
  if _VIDEO.value:
    _record_video(workdir, networks, learner)
  print(json.dumps({'env': _ENV.value, 'seed': seed, 'actor_steps': steps,
                    'learner_steps': learner.steps, 'workdir': workdir}))


def _record_video(workdir: str, networks: wpo.WPONetworks, learner: wpo.WPOLearner) -> None:
  ok, message = video.renderer_status()
  if not ok:
    print(f'No evaluation video: {message}')
    return
  policy = jax.jit(wpo.make_policy(networks, evaluation=True))
  params = learner.get_variables(['policy'])[0]
  key = jax.random.PRNGKey(0)
  path = os.path.join(workdir, 'evaluation.mp4')
  environment = environments.make_environment(_ENV.value, _SEED.value + 2_000_003)
  frames = video.record_episode(
      environment, lambda observation: jax.device_get(policy(params, key, observation[None]))[0],
      path)
  print(f'Evaluation video: {path} ({frames} frames)')


if __name__ == '__main__':
  app.run(main)
