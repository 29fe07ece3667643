"""The single-process training loop shared by every launcher: one method, one task, one seed.

An in-process Reverb server, a training actor in Acme's `EnvironmentLoop` (through
`acme.agents.agent.Agent`, which interleaves learner steps at the samples-per-insert ratio), an
evaluator on its own environment, CSV + TensorBoard logs, a learning curve, crash-safe checkpoints
and resume. The method comes in as `agents.baselines.AgentParts`, so WPO and every baseline run
through exactly the same code.
"""

import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional

from absl import logging
from acme import specs
from acme.agents import agent as acme_agent
from acme.environment_loop import EnvironmentLoop
from acme.utils import counting
from acme.utils import loggers
import jax
import reverb
import tqdm

from agents import baselines
from agents import checkpointing
from agents import csv_logs
from agents import devices
from agents import environments
from agents import policy_stats
from agents import reverb_bind
from agents import video
from agents import wpo
from experiments import plots

COUNT_KEYS = ('actor_steps', 'actor_episodes', 'learner_steps', 'learner_walltime',
              'evaluator_steps', 'evaluator_episodes')
# Evaluation environments use seeds far from the training ones.
EVAL_SEED_OFFSET = 1_000_003
VIDEO_SEED_OFFSET = 2_000_003
LOOPBACK = '127.0.0.1'  # The in-process Reverb server's address.


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How long to train and how to evaluate and checkpoint."""
  num_steps: int
  eval_every: int
  eval_episodes: int
  checkpoint_every_minutes: float = 5.0
  progress: bool = True
  video: bool = False


def make_logger(workdir: str, label: str, time_delta: float = 0.0) -> loggers.Logger:
  """Acme CSV (logs/<label>/logs.csv, flushed every row) + TensorBoard, optionally throttled."""
  # Imported here: the TensorBoard writer pulls in TensorFlow's summary ops.
  from acme.utils.loggers import tf_summary  # pylint: disable=g-import-not-at-top
  logger = loggers.Dispatcher([
      csv_logs.ResumableCSVLogger(workdir, label=label, add_uid=False, flush_every=1),
      tf_summary.TFSummaryLogger(os.path.join(workdir, 'tensorboard'), label=label),
  ], serialize_fn=loggers.to_numpy)
  logger = loggers.NoneFilter(logger)
  if time_delta > 0:
    logger = loggers.TimeFilter(logger, time_delta)
  return logger


class _ProgressLogger(loggers.Logger):
  """Forwards episode logs and advances a terminal progress bar with the latest returns."""

  def __init__(self, inner: loggers.Logger, bar: tqdm.tqdm, counter: counting.Counter,
               label: str):
    self._inner, self._bar, self._counter, self._label = inner, bar, counter, label

  def write(self, data):
    self._inner.write(data)
    if self._bar.disable:
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


def changed_settings(path: str, settings: Dict[str, Any],
                     config_key: str) -> Optional[List[str]]:
  """The top-level keys in which `settings` differ from the run.json at `path`; None if absent.

  The WPOConfig stored under `config_key` is completed with the defaults of fields added since it
  was written: the run used those defaults.
  """
  try:
    with open(path) as f:
      previous = json.load(f)
  except FileNotFoundError:
    return None
  current = json.loads(json.dumps(settings))  # Tuples become lists, as in the file.
  if isinstance(previous.get(config_key), dict):
    defaults = json.loads(json.dumps(dataclasses.asdict(wpo.WPOConfig())))
    previous[config_key] = {**defaults, **previous[config_key]}
  keys = (set(previous) | set(current)) - {devices.RUN_JSON_KEY}
  return sorted(k for k in keys if previous.get(k) != current.get(k))


def train(make_parts: Callable[[specs.EnvironmentSpec, Callable[[], Any]], baselines.AgentParts],
          task: str, seed: int, workdir: str, schedule: Schedule,
          title: Optional[str] = None) -> Dict[str, Any]:
  """Trains one method on `task` until `schedule.num_steps` actor steps; resumes from `workdir`.

  Args:
    make_parts: (environment spec, learner logger factory) -> AgentParts, with replay tables
      built for a single process (see `agents.baselines.single_process_replay`).
    task: a name valid for `agents.environments.make_environment`.
    seed: seeds the environments, networks and acting.
    workdir: logs, checkpoints and plots go here; an existing checkpoint is resumed.
    schedule: budget, evaluation and checkpoint settings.
    title: learning-curve title.

  Returns:
    The final counts with the workdir.

  Raises:
    wpo.NonFiniteLossError: the learner's loss became non-finite; the last checkpoint is kept.
  """
  environment = environments.make_environment(task, seed)
  eval_environment = environments.make_environment(task, seed + EVAL_SEED_OFFSET)
  spec = specs.make_environment_spec(environment)
  parts = make_parts(spec, lambda: make_logger(workdir, 'learner', 1.0))
  builder = parts.builder
  checkpointer = checkpointing.RunCheckpointer(os.path.join(workdir, 'checkpoints'))

  # Reverb listens on loopback only where agents.reverb_bind's wrapper is preloaded (the launchers
  # see to it); the server reloads the newest replay checkpoint in the directory on start.
  server = reverb_bind.start_server(builder.make_replay_tables(spec), LOOPBACK,
                                    checkpointer=checkpointer.replay_checkpointer())
  try:
    client = reverb.Client(f'{LOOPBACK}:{server.port}')
    return _train_with_replay(parts, client, checkpointer, environment, eval_environment, task,
                              seed, workdir, schedule, title or task)
  finally:
    server.stop()


def _train_with_replay(parts, client, checkpointer, environment, eval_environment, task, seed,
                       workdir, schedule, title):
  builder = parts.builder
  counter = counting.Counter()
  counter.increment(**{k: 0 for k in COUNT_KEYS})  # Stable CSV columns from the first row.
  learner_key, actor_key, eval_key = jax.random.split(jax.random.PRNGKey(seed), 3)
  learner = builder.make_learner(learner_key, parts.networks,
                                 builder.make_dataset_iterator(client), client,
                                 counting.Counter(counter, 'learner', time_delta=0.))
  restored = checkpointer.restore(learner.save())
  if restored is not None:
    learner.restore(restored.learner_state)
    counter.restore({'counts': dict(restored.counts), 'cache': {}})
    logging.info('Resumed from %s at %s.', checkpointer.directory, restored.counts)

  replay_size = sum(int(t.current_size) for t in client.server_info().values())
  actor = builder.make_actor(actor_key, parts.behaviour_policy, builder.make_adder(client),
                             variable_source=learner)
  agent = acme_agent.Agent(
      actor, learner,
      # A restored replay is already warm: learning continues at once.
      min_observations=max(0, parts.min_replay_size - replay_size),
      observations_per_step=parts.batch_size / parts.samples_per_insert)
  evaluator, eval_observers = policy_stats.make_evaluator(parts, eval_key, learner)

  steps = int(counter.get_counts()['actor_steps'])
  bar = tqdm.tqdm(total=schedule.num_steps, initial=steps, unit='step', smoothing=0.1,
                  dynamic_ncols=True, disable=not schedule.progress)
  train_loop = EnvironmentLoop(
      environment, agent, counter=counting.Counter(counter, 'actor', time_delta=0.),
      logger=_ProgressLogger(make_logger(workdir, 'actor'), bar, counter, 'actor'))
  eval_loop = EnvironmentLoop(
      eval_environment, evaluator, counter=counting.Counter(counter, 'evaluator', time_delta=0.),
      logger=_ProgressLogger(make_logger(workdir, 'evaluator'), bar, counter, 'evaluator'),
      observers=eval_observers)
  evaluator_csv = os.path.join(workdir, 'logs', 'evaluator', 'logs.csv')
  last_tick = [time.time()]

  def tick():
    # Wall-clock time of the run as a count: it is checkpointed with the others, so it sums over
    # resumed sessions, and every log row written after a tick carries it.
    now = time.time()
    counter.increment(wallclock_seconds=now - last_tick[0])
    last_tick[0] = now

  def evaluate():
    tick()  # Evaluation rows then carry the run's wall-clock time up to this evaluation.
    eval_loop.run(num_episodes=schedule.eval_episodes)
    plots.plot_learning_curve(evaluator_csv, os.path.join(workdir, 'learning_curve.png'), title)

  def checkpoint():
    tick()
    path = checkpointer.save(learner.save(), counter.get_counts(), client)
    logging.info('Checkpoint %s', path)

  if steps == 0:
    evaluate()  # The untrained policy: the curve's starting point.
  last_checkpoint = time.time()
  try:
    while steps < schedule.num_steps:
      next_eval = (steps // schedule.eval_every + 1) * schedule.eval_every
      train_loop.run(num_steps=min(next_eval, schedule.num_steps) - steps)
      steps = int(counter.get_counts()['actor_steps'])
      evaluate()
      if time.time() - last_checkpoint > 60 * schedule.checkpoint_every_minutes:
        checkpoint()
        last_checkpoint = time.time()
  except wpo.NonFiniteLossError:
    bar.close()
    raise
  except KeyboardInterrupt:
    bar.close()
    checkpoint()
    raise
  bar.close()
  checkpoint()
  if schedule.video:
    record_video(workdir, task, seed, parts, learner)
  return {**counter.get_counts(), 'workdir': workdir}


def record_video(workdir: str, task: str, seed: int, parts: baselines.AgentParts,
                  learner) -> None:
  ok, message = video.renderer_status()
  environment = environments.make_environment(task, seed + VIDEO_SEED_OFFSET)
  if ok and not hasattr(environment, 'physics'):
    ok, message = False, f'{task} has no single MuJoCo physics to render.'
  if not ok:
    print(f'No evaluation video: {message}')
    return
  policy = jax.jit(parts.evaluation_policy)
  params = learner.get_variables(['policy'])[0]
  key = jax.random.PRNGKey(0)
  path = os.path.join(workdir, 'evaluation.mp4')
  frames = video.record_episode(
      environment, lambda observation: jax.device_get(policy(params, key, observation[None]))[0],
      path)
  print(f'Evaluation video: {path} ({frames} frames)')

